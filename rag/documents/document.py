"""What a loader makes of a file: its text, and the sections chunking respects.

A :class:`LoadedDocument` is the extracted text and its sections (a stretch under one heading
path, on one page); chunk offsets point into that text. Any problem is a :class:`LoadError`
that names the file and the reason. Invisible characters (zero-width spaces, bidirectional
overrides, Unicode tag characters) are taken out of every type and counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import charset_normalizer

from rag.errors import RagError


class LoadError(RagError):
    """A file that cannot be ingested; ``reason`` says why in words a user can act on."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Section:
    """``text[start:end]`` of a document, under ``headings``, on ``page`` (1-based)."""

    start: int
    end: int
    headings: tuple[str, ...] = ()
    page: int | None = None


@dataclass
class LoadedDocument:
    """A file's extracted text and its sections, in order, covering the text."""

    text: str
    sections: list[Section] = field(default_factory=list)
    hidden_chars: int = 0  # characters of hidden text left out
    navigation_chars: int = 0  # characters of page navigation left out (HTML)
    parser_warnings: list[str] = field(default_factory=list)  # kept off the terminal
    ocr_pages: int = 0  # pages (or pictures) whose text was read by OCR


# Invisible in any text: zero-width space, word joiner and invisible operators, byte order
# mark, bidirectional embeddings, overrides and isolates, Unicode tag characters (which can
# spell out ASCII a model reads). Zero-width (non-)joiners stay: Persian and Indic need them.
_INVISIBLE = re.compile(
    "[\u200b\u2060-\u2064\ufeff\u202a-\u202e\u2066-\u2069\U000e0000-\U000e007f]"
)


def strip_invisible(text: str) -> tuple[str, int]:
    """``text`` without invisible characters, and how many there were."""
    stripped = _INVISIBLE.sub("", text)
    return stripped, len(text) - len(stripped)


class DocumentBuilder:
    """Appends blocks of text, starting a new section when headings or page change."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.sections: list[Section] = []
        self.hidden_chars = 0
        self.navigation_chars = 0

    def add(self, text: str, headings: tuple[str, ...] = (), page: int | None = None) -> None:
        """Append a block of text (invisible characters taken out) under these headings."""
        text, hidden = strip_invisible(text)
        self.hidden_chars += hidden
        text = text.strip()
        if not text:
            return
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2
        start = self.length
        self.parts.append(text)
        self.length += len(text)
        last = self.sections[-1] if self.sections else None
        if last and last.headings == headings and last.page == page:
            self.sections[-1] = Section(last.start, self.length, headings, page)
        else:
            self.sections.append(Section(start, self.length, headings, page))

    def build(self) -> LoadedDocument:
        """The document as built so far."""
        return LoadedDocument(
            "".join(self.parts),
            self.sections,
            self.hidden_chars,
            navigation_chars=self.navigation_chars,
        )


def decode_text(path: Path, data: bytes) -> str:
    """Decode bytes in UTF-8, UTF-16/32 with a BOM, or a detected legacy encoding.

    Raises:
        LoadError: the bytes are binary data or in no encoding that can be told.
    """
    for bom, encoding in BYTE_ORDER_MARKS:
        if data.startswith(bom):
            return _checked_text(path, data[len(bom) :].decode(encoding, errors="strict"))
    try:
        return _checked_text(path, data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    matches = list(charset_normalizer.from_bytes(data))
    if not matches:
        raise LoadError(path, "binary data or unknown text encoding")
    best = matches[0]
    # Western text is the common case, and the detector often ranks a Baltic or Central
    # European code page a hair above cp1252 for it; take cp1252 when it reads as cleanly.
    western = next((m for m in matches if m.encoding == "cp1252"), None)
    if western and western.chaos <= best.chaos + 0.1 and western.coherence >= best.coherence:
        best = western
    return _checked_text(path, str(best))


BYTE_ORDER_MARKS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def _checked_text(path: Path, text: str) -> str:
    """Reject decoded text that is mostly control characters: binary data, not prose."""
    if len(_CONTROL.findall(text)) > max(1, len(text) // 100):
        raise LoadError(path, "binary data, not text")
    return text.replace("\r\n", "\n").replace("\r", "\n")
