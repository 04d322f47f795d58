"""What a loader makes of a file: its text, and the sections chunking respects.

A :class:`LoadedDocument` is the extracted text and its sections (a stretch under one heading
path, on one page); chunk offsets point into that text. Any problem is a :class:`LoadError`
that names the file and the reason. Invisible characters (zero-width spaces, bidirectional
overrides, Unicode tag characters) are taken out of every type and counted.
"""

from __future__ import annotations

import bisect
import io
import re
import zipfile
from collections.abc import Sequence
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
    """``text[start:end]`` of a document, under ``headings``, on ``page`` (1-based).

    ``page`` numbers the unit a reader turns to: a PDF's page, a slide, a sheet, a chapter, a
    message of a mailbox; ``location`` names it where "page 3" would not ("slide 3",
    "sheet Costs", "chapter 2", "message 4 (Re: budget)").
    """

    start: int
    end: int
    headings: tuple[str, ...] = ()
    page: int | None = None
    location: str | None = None


@dataclass
class LoadedDocument:
    """A file's extracted text and its sections, in order, covering the text."""

    text: str
    sections: list[Section] = field(default_factory=list)
    hidden_chars: int = 0  # characters of hidden text left out
    navigation_chars: int = 0  # characters of page navigation left out (HTML)
    parser_warnings: list[str] = field(default_factory=list)  # kept off the terminal
    ocr_pages: int = 0  # pages (or pictures) whose text was read by OCR
    rows: list[tuple[int, int]] = field(default_factory=list)  # (offset, row) of a sheet's rows

    def rows_between(self, start: int, end: int, section: Section) -> tuple[int, int] | None:
        """The first and last sheet row that ``text[start:end]`` of ``section`` holds.

        None outside a table: a section without rows (a mail's body beside its sheet).
        """
        offsets = [offset for offset, _ in self.rows]
        low = bisect.bisect_left(offsets, section.start)
        high = bisect.bisect_left(offsets, section.end)
        if low == high:
            return None
        first = max(low, bisect.bisect_right(offsets, start, low, high) - 1)
        last = max(low, bisect.bisect_left(offsets, end, low, high) - 1)
        return self.rows[first][1], self.rows[last][1]


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
        self.rows: list[tuple[int, int]] = []
        self.parser_warnings: list[str] = []
        self.ocr_pages = 0

    def add(
        self,
        text: str,
        headings: tuple[str, ...] = (),
        page: int | None = None,
        location: str | None = None,
        row: int | None = None,
        rows: Sequence[tuple[int, int]] = (),
    ) -> None:
        """Append a block of text (invisible characters taken out) under these headings.

        ``row``: the sheet row the block holds; ``rows``: (offset in ``text``, row) of the
        rows it holds; either lets a chunk's citation name its rows.
        """
        text, hidden = strip_invisible(text)
        self.hidden_chars += hidden
        lead = len(text) - len(text.lstrip())
        text = text.strip()
        if not text:
            return
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2
        start = self.length
        self.parts.append(text)
        self.length += len(text)
        if row is not None:
            self.rows.append((start, row))
        self.rows += [(start + offset - lead, number) for offset, number in rows if offset >= lead]
        last = self.sections[-1] if self.sections else None
        if last and (last.headings, last.page, last.location) == (headings, page, location):
            self.sections[-1] = Section(last.start, self.length, headings, page, location)
        else:
            self.sections.append(Section(start, self.length, headings, page, location))

    def add_document(
        self,
        document: LoadedDocument,
        headings: tuple[str, ...] = (),
        page: int | None = None,
        within: str | None = None,
    ) -> None:
        """Append another loaded document (a chapter, a mail's body or attachment) in place.

        Its headings go under ``headings``; ``page``, when given, replaces its pages;
        ``within`` names where it sits ("chapter 2", "message 3 › sheet.xlsx"), before its
        own place ("sheet Costs", "page 2").
        """
        for section in document.sections:
            own = section.headings
            if headings and own[:1] == headings[-1:]:
                own = own[1:]  # a chapter whose first heading is its title: once is enough
            inner = section.location or (f"page {section.page}" if section.page else None)
            location = ", ".join(p for p in (within, inner) if p) if within else section.location
            rows = [
                (offset - section.start, number)
                for offset, number in document.rows
                if section.start <= offset < section.end
            ]
            self.add(
                document.text[section.start : section.end],
                headings + own,
                page if page is not None else section.page,
                location,
                rows=rows,
            )
        self.hidden_chars += document.hidden_chars
        self.navigation_chars += document.navigation_chars
        self.parser_warnings += document.parser_warnings
        self.ocr_pages += document.ocr_pages

    def build(self) -> LoadedDocument:
        """The document as built so far."""
        return LoadedDocument(
            "".join(self.parts),
            self.sections,
            self.hidden_chars,
            navigation_chars=self.navigation_chars,
            parser_warnings=self.parser_warnings,
            ocr_pages=self.ocr_pages,
            rows=self.rows,
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


MAX_INFLATION = 100  # an archive may unpack to this many times its size (text XML packs ~10x)


MAX_INFLATED_MB = 256  # ... once it unpacks to more than this


def check_unpacked_size(path: Path, data: bytes) -> None:
    """Refuse a zip bomb (DOCX, PPTX, XLSX, ODF, EPUB) before unpacking it.

    The sizes come from the archive's own directory; Python's zip reader stops at the sizes
    that directory declares, so they bound every later read.

    Raises:
        LoadError: not a zip archive, or one that would unpack too far.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            inflated = sum(item.file_size for item in archive.infolist())
    except zipfile.BadZipFile as error:
        reason = f"cannot parse {path.suffix} file: not a zip archive (broken or cut short)"
        raise LoadError(path, reason) from error
    if inflated > MAX_INFLATED_MB * 2**20 and inflated > MAX_INFLATION * len(data):
        reason = (
            f"unpacks to {inflated / 2**20:.0f} MB from {len(data) / 2**20:.1f} MB "
            "(a zip bomb, or too large to read)"
        )
        raise LoadError(path, reason)
