"""Turn a file into text plus the structure that chunking respects.

Every loader returns a :class:`LoadedDocument`: the file's extracted text, and the sections
of it (a stretch under one heading path, on one page). Chunk offsets point into that text:
for txt and md it is the file's own text, for the other types the text the loader extracted.
Any problem becomes a :class:`LoadError` that names the file and the reason.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import charset_normalizer

from rag.errors import RagError

SUPPORTED_TYPES = frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".csv"})


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


class _Builder:
    """Appends blocks of text, starting a new section when headings or page change."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.sections: list[Section] = []

    def add(self, text: str, headings: tuple[str, ...] = (), page: int | None = None) -> None:
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
        return LoadedDocument("".join(self.parts), self.sections)


def load(path: Path, data: bytes | None = None) -> LoadedDocument:
    """Load one supported file; ``data`` is its content when the caller has read it already.

    Raises:
        LoadError: the file is unreadable, corrupt, empty, binary or of another type.
    """
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        raise LoadError(path, f"unsupported file type {path.suffix or '(none)'}")
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise LoadError(path, f"cannot read: {error.strerror or error}") from error
    if not data.strip():
        raise LoadError(path, "empty file")
    try:
        document = loader(path, data)
    except LoadError:
        raise
    except Exception as error:  # parsers raise many types on corrupt input
        raise LoadError(path, f"cannot parse {path.suffix} file: {error}") from error
    if not document.text.strip():
        raise LoadError(path, "no text found in the file")
    return document


def decode_text(path: Path, data: bytes) -> str:
    """Decode bytes in UTF-8, UTF-16/32 with a BOM, or a detected legacy encoding.

    Raises:
        LoadError: the bytes are binary data or in no encoding that can be told.
    """
    for bom, encoding in _BOMS:
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


_BOMS = (
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


# --- plain text and markdown ------------------------------------------------------------

_ATX = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_UNDERLINE = re.compile(r"^([=*\-~^#+])\1{2,}[ \t]*$")
_FENCE = re.compile(r"^(```|~~~)")


def _heading_lines(text: str, markdown: bool) -> Iterator[tuple[int, int, str]]:
    """Yield (offset, level, title) of each heading line.

    Setext/reStructuredText headings (a title over a line of ``=``, ``*``, ``-`` ...) are
    found in both formats, ATX ``#`` headings in markdown only; fenced code is skipped.
    Underline characters get levels in order of first use, as reStructuredText does.
    """
    levels: dict[str, int] = {}
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    in_fence = False
    for i, line in enumerate(lines):
        if markdown and _FENCE.match(line):
            in_fence = not in_fence
        if in_fence:
            continue
        atx = _ATX.match(line) if markdown else None
        if atx:
            yield offsets[i], len(atx.group(1)), atx.group(2).strip()
            continue
        below = lines[i + 1] if i + 1 < len(lines) else ""
        underline = _UNDERLINE.match(below)
        title = line.strip()
        if (
            underline
            and title
            and not _UNDERLINE.match(line)
            and len(below.strip()) >= len(title) // 2
        ):
            char = underline.group(1)
            level = levels.setdefault(char, len(levels) + 1)
            yield offsets[i], level, title


def _load_plain(path: Path, data: bytes, markdown: bool) -> LoadedDocument:
    text = decode_text(path, data)
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    start = 0
    for offset, level, title in _heading_lines(text, markdown):
        if offset > start:
            sections.append(Section(start, offset, tuple(t for _, t in stack)))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        start = offset
    sections.append(Section(start, len(text), tuple(t for _, t in stack)))
    return LoadedDocument(text, [s for s in sections if text[s.start : s.end].strip()])


def load_txt(path: Path, data: bytes) -> LoadedDocument:
    """Plain text; underlined titles count as headings."""
    return _load_plain(path, data, markdown=False)


def load_markdown(path: Path, data: bytes) -> LoadedDocument:
    """Markdown; ATX and setext headings start sections."""
    return _load_plain(path, data, markdown=True)


# --- html -------------------------------------------------------------------------------

_SKIPPED_TAGS = frozenset({"script", "style", "noscript", "template", "head", "svg", "iframe"})
_BLOCK_TAGS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "caption",
        "dd",
        "details",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
    ]
)
_HEADING_TAGS = {f"h{n}": n for n in range(1, 7)}
_SPACES = re.compile(r"[ \t\r\n\f\v]+")


def load_html(path: Path, data: bytes) -> LoadedDocument:
    """HTML text without scripts and styles; h1-h6 start sections."""
    from bs4 import BeautifulSoup
    from bs4.element import Comment, Doctype, NavigableString, Tag

    soup = BeautifulSoup(decode_text(path, data), "html.parser")
    builder = _Builder()
    stack: list[tuple[int, str]] = []
    paragraph: list[str] = []

    def flush() -> None:
        builder.add(_SPACES.sub(" ", "".join(paragraph)), tuple(t for _, t in stack))
        paragraph.clear()

    def walk(node: Tag) -> None:
        for child in node.children:
            if isinstance(child, Comment | Doctype):
                continue
            if isinstance(child, NavigableString):
                paragraph.append(str(child))
            elif isinstance(child, Tag) and child.name not in _SKIPPED_TAGS:
                level = _HEADING_TAGS.get(child.name)
                if level is not None:
                    flush()
                    while stack and stack[-1][0] >= level:
                        stack.pop()
                    stack.append((level, _SPACES.sub(" ", child.get_text(" ")).strip()))
                    builder.add(stack[-1][1], tuple(t for _, t in stack))
                elif child.name in _BLOCK_TAGS:
                    flush()
                    walk(child)
                    flush()
                else:
                    walk(child)

    walk(soup)
    flush()
    return builder.build()


# --- pdf, docx, csv ---------------------------------------------------------------------


def load_pdf(path: Path, data: bytes) -> LoadedDocument:
    """PDF text page by page; each chunk keeps its page number."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted and not reader.decrypt(""):
        raise LoadError(path, "encrypted PDF (needs a password)")
    builder = _Builder()
    for number, page in enumerate(reader.pages, start=1):
        builder.add(page.extract_text() or "", page=number)
    document = builder.build()
    if not document.text.strip():
        raise LoadError(path, "no extractable text in the PDF (scanned images need OCR)")
    return document


def load_docx(path: Path, data: bytes) -> LoadedDocument:
    """Word document paragraphs and tables in order; Heading and Title styles start sections."""
    import docx
    from docx.table import Table

    document = docx.Document(io.BytesIO(data))
    builder = _Builder()
    stack: list[tuple[int, str]] = []
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                cells = [cell.text.strip() for cell in row.cells]
                builder.add(" | ".join(c for c in cells if c), tuple(t for _, t in stack))
            continue
        style = block.style.name if block.style is not None and block.style.name else ""
        level = 0 if style == "Title" else _docx_heading_level(style)
        if level is not None and block.text.strip():
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, block.text.strip()))
        builder.add(block.text, tuple(t for _, t in stack))
    return builder.build()


def _docx_heading_level(style: str) -> int | None:
    """'Heading 2' -> 2; any other style -> None."""
    match = re.fullmatch(r"Heading (\d)", style)
    return int(match.group(1)) if match else None


def load_csv(path: Path, data: bytes) -> LoadedDocument:
    """CSV rows, each kept whole as 'column: value' lines under the header."""
    text = decode_text(path, data)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:8192])
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    if not rows:
        raise LoadError(path, "no rows in the CSV file")
    header, body = rows[0], rows[1:]
    builder = _Builder()
    for row in body or [header]:
        if not any(cell.strip() for cell in row):
            continue
        names = header if body else [""] * len(row)
        lines = [
            f"{name.strip()}: {cell.strip()}" if name.strip() else cell.strip()
            for name, cell in zip(names + [""] * (len(row) - len(names)), row, strict=False)
            if cell.strip()
        ]
        builder.add("\n".join(lines))
    return builder.build()


_LOADERS: dict[str, Callable[[Path, bytes], LoadedDocument]] = {
    ".txt": load_txt,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".csv": load_csv,
}
