"""Turn a file into text plus the structure that chunking respects: one loader per format.

:func:`load` picks the loader by the file's type: text, Markdown and RTF here, HTML
(:mod:`rag.documents.html`), PDF (:mod:`rag.documents.pdf`), Word, PowerPoint and
OpenDocument text (:mod:`rag.documents.office`), spreadsheets and CSV
(:mod:`rag.documents.sheets`), EPUB (:mod:`rag.documents.ebooks`), mail
(:mod:`rag.documents.mail`), and pictures of text by OCR (:mod:`rag.documents.ocr`, unless
``ingest.ocr`` is off). A file of any other name is read as text when its first bytes are text
(:func:`binary_kind`). Text a reader would not see is left out and counted (``hidden_chars``),
since a known attack hides instructions to the model in it.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from rag.documents.document import (
    BYTE_ORDER_MARKS,
    DocumentBuilder,
    LoadedDocument,
    LoadError,
    Section,
    decode_text,
    strip_invisible,
)
from rag.documents.ebooks import load_epub
from rag.documents.html import load_html
from rag.documents.mail import load_eml, load_mbox
from rag.documents.ocr import image_text
from rag.documents.office import load_docx, load_odt, load_pptx
from rag.documents.pdf import load_pdf
from rag.documents.sheets import load_csv, load_ods, load_xlsx

IMAGE_TYPES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})


SUPPORTED_TYPES = (
    frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".csv", ".rtf"})
    | frozenset({".pptx", ".xlsx", ".ods", ".odt", ".epub", ".eml", ".mbox"})
    | IMAGE_TYPES
)


# Files of any other name are read as plain text when their content is text (README, COPYING,
# changelog, .rst, .log...); these are text that no reader wants as prose.
NOT_PROSE = {".svg": "an SVG image (markup, not prose)"}


SNIFF_BYTES = 8192  # how much of a file of another type is read to tell text from binary


_MAGIC = (
    (b"\x89PNG", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF8", "GIF image"),
    (b"%PDF", "PDF document without the .pdf extension"),
    (b"PK\x03\x04", "ZIP archive or office document"),
    (b"\x1f\x8b", "gzip archive"),
    (b"BZh", "bzip2 archive"),
    (b"\xfd7zXZ", "xz archive"),
    (b"(\xb5/\xfd", "zstd archive"),
    (b"\x7fELF", "ELF executable"),
    (b"SQLite format 3", "SQLite database"),
)


def file_type(path: Path) -> str:
    """The type a file is stored and filtered as: its listed suffix ('pdf'), else 'txt'."""
    suffix = path.suffix.lower()
    return suffix.lstrip(".") if suffix in SUPPORTED_TYPES else "txt"


def binary_kind(path: Path, head: bytes) -> str | None:
    """Why a file of a type not listed is not read as text ('binary (PNG image)'), or None.

    ``head`` is the file's first :data:`SNIFF_BYTES` bytes: text has no NUL bytes (unless
    UTF-16/32 with a byte-order mark) and decodes.
    """
    if path.suffix.lower() in NOT_PROSE:
        return NOT_PROSE[path.suffix.lower()]
    kind = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
    if kind is not None:
        return f"binary ({kind})"
    if any(head.startswith(bom) for bom, _ in BYTE_ORDER_MARKS):
        return None
    if b"\x00" in head:
        return "binary"
    try:
        decode_text(path, head[: len(head) - 3] if len(head) == SNIFF_BYTES else head)
    except LoadError:
        return "binary"
    return None


def load(path: Path, data: bytes | None = None, ocr: bool = True) -> LoadedDocument:
    """Load one supported file; ``data`` is its content when the caller has read it already.

    ``ocr``: read images, and PDF pages that are pictures without a text layer, by OCR.

    Raises:
        LoadError: the file is unreadable, corrupt, empty, binary or of another type.
    """
    loader = _LOADERS.get(path.suffix.lower(), load_txt)  # another type: text, if it is
    if loader in _READ_PICTURES:
        loader = functools.partial(loader, ocr=ocr)
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


_ATX = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")


_ASCIIDOC = re.compile(r"^(={1,6})[ \t]+(.+?)[ \t]*$")


_UNDERLINE = re.compile(r"^([=*\-~^#+])\1{2,}[ \t]*$")


_FENCE = re.compile(r"^(```|~~~)")


def _heading_lines(
    text: str, markdown: bool, asciidoc: bool = False
) -> Iterator[tuple[int, int, str]]:
    """Yield (offset, level, title) of each heading line.

    Setext/reStructuredText headings (a title over a line of ``=``, ``*``, ``-`` ...) are
    found in every format, ATX ``#`` headings in markdown only, ``== Title`` in AsciiDoc
    only; fenced code is skipped.
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
        atx = _ATX.match(line) if markdown else _ASCIIDOC.match(line) if asciidoc else None
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
    text, hidden = strip_invisible(decode_text(path, data))
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    start = 0
    asciidoc = path.suffix.lower() in (".adoc", ".asciidoc")
    for offset, level, title in _heading_lines(text, markdown, asciidoc):
        if offset > start:
            sections.append(Section(start, offset, tuple(t for _, t in stack)))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        start = offset
    sections.append(Section(start, len(text), tuple(t for _, t in stack)))
    kept = [s for s in sections if text[s.start : s.end].strip()]
    return LoadedDocument(text, kept, hidden)


def load_txt(path: Path, data: bytes) -> LoadedDocument:
    """Plain text, and any type not listed; reST's and AsciiDoc's headings count as headings."""
    return _load_plain(path, data, markdown=False)


def load_markdown(path: Path, data: bytes) -> LoadedDocument:
    """Markdown; ATX and setext headings start sections."""
    return _load_plain(path, data, markdown=True)


def load_rtf(path: Path, data: bytes) -> LoadedDocument:
    """Rich Text Format, as its plain text (striprtf); headings as in plain text.

    Limits: tables lose their structure, pictures and embedded objects are left out.
    """
    from striprtf.striprtf import rtf_to_text

    if not data.lstrip().startswith(b"{\\rtf"):
        raise LoadError(path, "not an RTF file (it does not start with {\\rtf)")
    convert: Callable[..., str] = rtf_to_text  # untyped: it takes and gives str
    text = convert(data.decode("latin-1"), errors="ignore")  # its escapes decoded by it
    return _load_plain(path, text.encode(), markdown=False)


def load_image(path: Path, data: bytes, ocr: bool = True) -> LoadedDocument:
    """The text in a picture (png, jpg, tiff), by OCR; each page of a multi-page TIFF is a page."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    if not ocr:
        raise LoadError(path, "an image: its text is read only by OCR, and ingest.ocr is off")
    builder = DocumentBuilder()
    try:
        with Image.open(io.BytesIO(data)) as image:
            frames = [frame.copy() for frame in ImageSequence.Iterator(image)]
    except (UnidentifiedImageError, OSError) as error:
        raise LoadError(path, "not a readable image (a broken or partial file)") from error
    for number, frame in enumerate(frames, start=1):
        builder.add(image_text(frame), page=number if len(frames) > 1 else None)
    document = builder.build()
    document.ocr_pages = len(frames)
    return document


_LOADERS: dict[str, Callable[[Path, bytes], LoadedDocument]] = {
    ".txt": load_txt,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".pptx": load_pptx,
    ".odt": load_odt,
    ".rtf": load_rtf,
    ".csv": load_csv,
    ".xlsx": load_xlsx,
    ".ods": load_ods,
    ".epub": load_epub,
    ".eml": load_eml,
    ".mbox": load_mbox,
    **dict.fromkeys(IMAGE_TYPES, load_image),
}


_READ_PICTURES = frozenset({load_pdf, load_image, load_eml, load_mbox})  # they take ``ocr``
