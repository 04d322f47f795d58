"""Turn a file into text plus the structure that chunking respects.

Every loader returns a :class:`LoadedDocument`: the file's extracted text, and the sections
of it (a stretch under one heading path, on one page). Chunk offsets point into that text:
for txt and md it is the file's own text, for the other types the text the loader extracted.
Any problem becomes a :class:`LoadError` that names the file and the reason.

Text a reader would not see is left out and counted (``hidden_chars``), since a known attack
hides instructions to the model in it: invisible characters (zero-width spaces, word joiners,
bidirectional overrides, Unicode tag characters) in every type; in HTML, elements hidden by
``display:none``, ``visibility:hidden``, ``opacity:0``, zero font size, the ``hidden`` or
``aria-hidden`` attribute, or a text colour equal to their background (white on an unset
background counts as white on white), set inline or by a stylesheet's simple ``.class``,
``#id`` or tag rule; in PDFs, text drawn invisible (render mode 3 or 7), in white, or off the
page. Limits: other CSS (combinators, media queries, external sheets) is not evaluated; PDF
text hidden under an image or in a colour close to but not exactly the background is kept.

Pictures of text (png, jpg, tiff, and PDF pages that are scans without a text layer) are read
by OCR (:mod:`rag.documents.ocr`), unless ``ingest.ocr`` is off.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import logging
import math
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import charset_normalizer

from rag.documents.ocr import image_text, pdf_page_image, pdf_pages_with_images
from rag.errors import RagError

IMAGE_TYPES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})
SUPPORTED_TYPES = (
    frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".csv"}) | IMAGE_TYPES
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
    if any(head.startswith(bom) for bom, _ in _BOMS):
        return None
    if b"\x00" in head:
        return "binary"
    try:
        decode_text(path, head[: len(head) - 3] if len(head) == SNIFF_BYTES else head)
    except LoadError:
        return "binary"
    return None


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


class _Builder:
    """Appends blocks of text, starting a new section when headings or page change."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.sections: list[Section] = []
        self.hidden_chars = 0
        self.navigation_chars = 0

    def add(self, text: str, headings: tuple[str, ...] = (), page: int | None = None) -> None:
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
        return LoadedDocument(
            "".join(self.parts),
            self.sections,
            self.hidden_chars,
            navigation_chars=self.navigation_chars,
        )


def load(path: Path, data: bytes | None = None, ocr: bool = True) -> LoadedDocument:
    """Load one supported file; ``data`` is its content when the caller has read it already.

    ``ocr``: read images, and PDF pages that are pictures without a text layer, by OCR.

    Raises:
        LoadError: the file is unreadable, corrupt, empty, binary or of another type.
    """
    loader = _LOADERS.get(path.suffix.lower(), load_txt)  # another type: text, if it is
    if loader in (load_pdf, load_image):
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
    """HTML text without scripts, styles and navigation; h1-h6 start sections.

    Navigation is left out and counted: ``nav`` elements and ARIA navigation, banner and
    footer landmarks, page-level ``header`` and ``footer``, breadcrumbs, texinfo's header
    panels, lists and tables of links alone (contents, an index), and paragraphs that are "Next: …
    Previous: … Up: …" lines.
    """
    from bs4 import BeautifulSoup
    from bs4.element import Comment, Doctype, NavigableString, Tag

    soup = BeautifulSoup(decode_text(path, data), "html.parser")
    rules = _stylesheet_rules(" ".join(style.get_text() for style in soup.find_all("style")))
    builder = _Builder()
    stack: list[tuple[int, str]] = []
    paragraph: list[str] = []

    def flush() -> None:
        text = _SPACES.sub(" ", "".join(paragraph))
        if is_navigation_line(text):
            builder.navigation_chars += len(text.strip())
        else:
            builder.add(text, tuple(t for _, t in stack))
        paragraph.clear()

    # Depth first with a stack of its own, not recursion: any nesting depth reads.
    # Each frame: the children left to visit, whether the element is a block, its background
    # (a page without a background colour shows white).
    frames: list[tuple[Iterator[Any], bool, tuple[int, ...]]] = [
        (iter(soup.children), False, _WHITE)
    ]
    while frames:
        children, block, background = frames[-1]
        child = next(children, _END)
        if child is _END:
            frames.pop()
            if block:
                flush()
        elif isinstance(child, Comment | Doctype):
            continue
        elif isinstance(child, NavigableString):
            paragraph.append(str(child))
        elif isinstance(child, Tag) and child.name not in _SKIPPED_TAGS:
            style = _style_of(child, rules)
            inner = _color(style.get("background-color") or style.get("background", ""))
            shown_on = inner or background
            if _hidden(child, style, shown_on):
                builder.hidden_chars += len(_SPACES.sub(" ", child.get_text(" ")).strip())
                continue
            if _navigation(child):
                builder.navigation_chars += len(_SPACES.sub(" ", child.get_text(" ")).strip())
                continue
            level = _HEADING_TAGS.get(child.name)
            if level is not None:
                flush()
                while stack and stack[-1][0] >= level:
                    stack.pop()
                stack.append((level, _SPACES.sub(" ", child.get_text(" ")).strip()))
                builder.add(stack[-1][1], tuple(t for _, t in stack))
            else:
                if child.name in _BLOCK_TAGS:
                    flush()
                frames.append((iter(child.children), child.name in _BLOCK_TAGS, shown_on))
    flush()
    return builder.build()


_END = object()
_NAVIGATION_ROLES = frozenset({"navigation", "banner", "contentinfo"})
_NAVIGATION_CLASSES = frozenset({"breadcrumb", "breadcrumbs", "nav-panel", "navbar", "navigation"})
_SECTIONING = frozenset({"article", "aside", "main", "section", "nav"})
_NAVIGATION_LINE = re.compile(r"\b(Next|Previous|Prev|Up):", re.I)
_WORD = re.compile(r"\w+")


def _navigation(tag: Any) -> bool:
    """Whether an element is the page's navigation, not its content."""
    if tag.name == "nav" or tag.get("role") in _NAVIGATION_ROLES:
        return True
    classes = set(tag.get("class") or ())
    if classes & _NAVIGATION_CLASSES:
        return True
    if tag.name in ("ul", "ol", "menu", "table") and len(tag.find_all(("li", "tr"))) >= 3:
        # Links and little else: a table of contents, an index.
        words = len(_WORD.findall(tag.get_text(" ")))
        linked = sum(len(_WORD.findall(a.get_text(" "))) for a in tag.find_all("a"))
        return words > 0 and linked >= 0.8 * words
    if tag.name in ("header", "footer") or (tag.name == "div" and "header" in classes):
        # A page's header or footer is navigation; an article's holds its title and byline.
        return not any(parent.name in _SECTIONING for parent in tag.parents)
    return False


def is_navigation_line(text: str) -> bool:
    """A manual's "Next: Index, Previous: Memory Usage, Up: libffi [Index]" line."""
    return len(set(m.lower() for m in _NAVIGATION_LINE.findall(text))) >= 2 and len(text) < 300


_WHITE = (255, 255, 255)
_NAMED_COLORS = {"white": _WHITE, "black": (0, 0, 0), "transparent": ()}
_HEX_COLOR = re.compile(r"#([0-9a-f]{3}|[0-9a-f]{6})\b")
_RGB_COLOR = re.compile(r"rgba?\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)")
_ZERO_SIZE = re.compile(r"0*\.?0+(px|pt|em|rem|%|vw|vh)?")
_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
_SIMPLE_SELECTOR = re.compile(r"[.#]?[\w-]+")


def _declarations(css: str) -> dict[str, str]:
    """'color: red; display:none' -> {'color': 'red', 'display': 'none'}."""
    found: dict[str, str] = {}
    for declaration in css.split(";"):
        name, colon, value = declaration.partition(":")
        if colon:
            found[name.strip().lower()] = value.replace("!important", "").strip().lower()
    return found


def _stylesheet_rules(css: str) -> dict[str, dict[str, str]]:
    """Declarations of a stylesheet's simple selectors: 'p', '.class', '#id'."""
    rules: dict[str, dict[str, str]] = {}
    for selectors, body in _RULE.findall(re.sub(r"/\*.*?\*/", "", css, flags=re.S)):
        for selector in selectors.split(","):
            if _SIMPLE_SELECTOR.fullmatch(selector.strip()):
                rules.setdefault(selector.strip().lower(), {}).update(_declarations(body))
    return rules


def _style_of(tag: Any, rules: dict[str, dict[str, str]]) -> dict[str, str]:
    """The tag's declarations: stylesheet rules for its name, classes and id, then inline."""
    style: dict[str, str] = {}
    if rules:
        classes = tag.get("class") or []
        for selector in (tag.name, *(f".{c}" for c in classes), f"#{tag.get('id', '')}"):
            style.update(rules.get(str(selector).lower(), {}))
    inline = tag.get("style")
    if inline:
        style.update(_declarations(str(inline)))
    return style


def _color(value: str) -> tuple[int, ...] | None:
    """An RGB triple from a CSS colour (or a background shorthand holding one); () clear."""
    value = value.lower()
    if match := _HEX_COLOR.search(value):
        digits = match.group(1)
        if len(digits) == 3:
            digits = "".join(d * 2 for d in digits)
        return tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))
    if match := _RGB_COLOR.search(value):
        return tuple(int(n) for n in match.groups())
    return next((rgb for name, rgb in _NAMED_COLORS.items() if name in value.split()), None)


def _hidden(tag: Any, style: dict[str, str], background: tuple[int, ...]) -> bool:
    """Whether a reader would see nothing of ``tag``: hidden, transparent, tiny or camouflaged."""
    if tag.has_attr("hidden") or str(tag.get("aria-hidden", "")).lower() == "true":
        return True
    if style.get("display") == "none" or style.get("visibility") in ("hidden", "collapse"):
        return True
    try:
        if float(style.get("opacity", "1").rstrip("%")) == 0:
            return True
    except ValueError:
        pass
    if _ZERO_SIZE.fullmatch(style.get("font-size", "")):
        return True
    color = _color(style.get("color", ""))
    return bool(color) and color == background


# --- pdf, docx, csv ---------------------------------------------------------------------


def load_pdf(path: Path, data: bytes, ocr: bool = True) -> LoadedDocument:
    """PDF text page by page; each chunk keeps its page number.

    A page without a text layer that shows a picture (a scan) is read by OCR when ``ocr``.
    """
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted and not reader.decrypt(""):
        raise LoadError(path, "encrypted PDF (needs a password)")
    builder = _Builder()
    pictures: set[int] | None = None  # pages showing a picture, looked up on the first need
    ocr_pages = 0
    with _captured_warnings("pypdf") as warnings:
        for number, page in enumerate(reader.pages, start=1):
            text, hidden = _visible_pdf_text(page)
            if ocr and len(text.strip()) < MIN_PAGE_CHARS:
                if pictures is None:
                    pictures = pdf_pages_with_images(data)
                if number in pictures:
                    text, hidden = image_text(pdf_page_image(data, number)), 0
                    ocr_pages += 1
            builder.add(_clean_pdf_text(text), page=number)
            builder.hidden_chars += hidden
    document = builder.build()
    document.parser_warnings = warnings
    document.ocr_pages = ocr_pages
    if not document.text.strip():
        why = "" if ocr else " (ingest.ocr is off: scanned pages are not read)"
        raise LoadError(path, f"no text in the PDF{why}")
    return document


MIN_PAGE_CHARS = 20  # a page with less text than this, and a picture, is a scan: OCR reads it


def load_image(path: Path, data: bytes, ocr: bool = True) -> LoadedDocument:
    """The text in a picture (png, jpg, tiff), by OCR; each page of a multi-page TIFF is a page."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    if not ocr:
        raise LoadError(path, "an image: its text is read only by OCR, and ingest.ocr is off")
    builder = _Builder()
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


_HYPHENATED = re.compile(r"([^\W\d_])-\n([^\W\d_A-Z])")  # "float-\ning", not "3-\nD"


def _clean_pdf_text(text: str) -> str:
    """PDF text as words, as a reader types them.

    Ligatures and other compatibility forms become plain letters (NFKC: the 'fi' ligature
    becomes 'fi'); a word hyphenated across a line end is joined ('float-' + 'ing').
    """
    return _HYPHENATED.sub(r"\1\2", unicodedata.normalize("NFKC", text))


@contextlib.contextmanager
def _captured_warnings(logger_name: str) -> Iterator[list[str]]:
    """A library's log warnings, collected instead of printed (reported once per file)."""
    logger = logging.getLogger(logger_name)
    found: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.append(record.getMessage())

    handler = Collect(logging.WARNING)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


_SHOW_TEXT = frozenset({b"Tj", b"TJ", b"'", b'"'})


def _visible_pdf_text(page: Any) -> tuple[str, int]:
    """The page's text as pypdf extracts it, less what is drawn invisibly; hidden chars.

    pypdf hands each piece of text it extracts to a visitor, after the operators that drew
    it; the graphics state at those operators tells whether a reader could see it: the
    render mode (3 and 7 draw nothing), the fill colour (white), the position (off the page).
    A piece mixing visible and hidden drawing is kept. A page set in two columns is read
    column by column (:func:`_in_columns`), whatever order its lines were drawn in.
    """
    left, bottom, right, top = (float(v) for v in page.mediabox)
    state: dict[str, Any] = {"mode": 0, "white": False}
    saved: list[dict[str, Any]] = []
    drawn: list[bool] = []  # per text-showing operator since the last piece: hidden?
    kept: list[str] = []
    placed: list[_Piece] = []
    hidden = 0

    def before(operator: bytes, args: list[Any], cm: list[float], tm: list[float]) -> None:
        if operator == b"q":
            saved.append(dict(state))
        elif operator == b"Q" and saved:
            state.update(saved.pop())
        elif operator == b"Tr" and args:
            state["mode"] = int(args[0])
        elif operator in (b"g", b"rg", b"sc", b"scn") and args:
            state["white"] = _all_numbers(args) and all(float(a) >= 0.99 for a in args)
        elif operator == b"k" and args:
            state["white"] = _all_numbers(args) and all(float(a) <= 0.01 for a in args)
        elif operator in _SHOW_TEXT:
            x, y = _page_point(cm, tm)
            off_page = not (left - 1 <= x <= right + 1 and bottom - 1 <= y <= top + 1)
            drawn.append(state["mode"] in (3, 7) or state["white"] or off_page)

    def visit(text: str, cm: Any = None, tm: Any = None, _: Any = None, size: Any = 0) -> None:
        nonlocal hidden
        if text.strip() and drawn and all(drawn):
            hidden += len(text.strip())
        else:
            kept.append(text)
            if text.strip() and cm is not None and tm is not None:
                x, y = _page_point(cm, tm)
                scale = math.hypot(tm[0] * cm[0], tm[1] * cm[1]) or 1.0
                width = 0.5 * float(size or 10) * scale * len(text.strip())  # a guess: no metrics
                placed.append(_Piece(x, y, x + width, text))
        if text.strip():
            drawn.clear()

    page.extract_text(visitor_operand_before=before, visitor_text=visit)
    columns = _in_columns(placed, left, right)
    return ("".join(kept) if columns is None else columns), hidden


@dataclass(frozen=True)
class _Piece:
    """A piece of a PDF page's text where it was drawn: start x and y, estimated end x."""

    x: float
    y: float
    end: float
    text: str


def _page_point(cm: list[float], tm: list[float]) -> tuple[float, float]:
    return tm[4] * cm[0] + tm[5] * cm[2] + cm[4], tm[4] * cm[1] + tm[5] * cm[3] + cm[5]


MIN_COLUMN_LINES = 4  # lines each column needs before a page counts as set in two columns


def _in_columns(pieces: list[_Piece], left: float, right: float) -> str | None:
    """The text of a two-column page, left column first; None for any other page.

    Two columns: a gutter in the middle third of the page that no line crosses, with at least
    ``MIN_COLUMN_LINES`` lines on each side whose text fills most of its column's width (a
    table's short cells do not count, so tables keep their rows). A line crossing the gutter
    (a title, a figure caption) separates the page into bands, read top to bottom.
    """
    lines = [p for p in pieces if len(p.text.strip()) > 1]
    width = right - left
    if len(lines) < 2 * MIN_COLUMN_LINES or width <= 0:
        return None
    gutter = min(
        (left + width * share / 100 for share in range(35, 66)),
        key=lambda x: sum(p.x < x < p.end for p in lines),
    )
    crossing = [p for p in lines if p.x < gutter < p.end]
    full = (gutter - left) * 0.5  # text filling half its column or more is running text
    filled_left = [p for p in lines if p.end <= gutter and p.end - p.x >= full]
    filled_right = [p for p in lines if p.x >= gutter and p.end - p.x >= (right - gutter) * 0.5]
    if (
        len(crossing) > len(lines) // 10
        or len(filled_left) < MIN_COLUMN_LINES
        or len(filled_right) < MIN_COLUMN_LINES
    ):
        return None
    bands: list[list[_Piece]] = [[]]
    separators: list[_Piece] = []
    for piece in sorted(lines, key=lambda p: -p.y):  # top to bottom
        if piece.x < gutter < piece.end:
            separators.append(piece)
            bands.append([])
        else:
            bands[-1].append(piece)
    out: list[str] = []
    for number, band in enumerate(bands):
        if number:
            out.append(" ".join(separators[number - 1].text.split()))
        for column in ([p for p in band if p.x < gutter], [p for p in band if p.x >= gutter]):
            out += _joined_lines(sorted(column, key=lambda p: -p.y))
    return "\n".join(line for line in out if line)


def _joined_lines(pieces: list[_Piece]) -> list[str]:
    """Pieces top to bottom as lines: pieces at one height join with a space."""
    lines: list[str] = []
    last_y: float | None = None
    for piece in pieces:
        text = " ".join(piece.text.split())
        if last_y is not None and abs(piece.y - last_y) < 1 and lines:
            lines[-1] += " " + text
        else:
            lines.append(text)
        last_y = piece.y
    return lines


def _all_numbers(args: list[Any]) -> bool:
    return all(isinstance(a, int | float) for a in args)


def load_docx(path: Path, data: bytes) -> LoadedDocument:
    """Word document paragraphs and tables in order; Heading and Title styles start sections."""
    import docx
    from docx.table import Table

    _check_inflated_size(path, data)
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


MAX_INFLATION = 100  # a DOCX may unpack to this many times its size (text XML packs ~10x)
MAX_INFLATED_MB = 256  # ... once it unpacks to more than this


def _check_inflated_size(path: Path, data: bytes) -> None:
    """Refuse a zip bomb before unpacking it: sizes from the archive's own directory.

    Python's zip reader stops at the sizes that directory declares, so they bound the read.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        inflated = sum(item.file_size for item in archive.infolist())
    if inflated > MAX_INFLATED_MB * 2**20 and inflated > MAX_INFLATION * len(data):
        reason = (
            f"unpacks to {inflated / 2**20:.0f} MB from {len(data) / 2**20:.1f} MB "
            "(a zip bomb, or too large to read)"
        )
        raise LoadError(path, reason)


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
    widest = max(len(row) for row in rows)
    if widest > MAX_CSV_COLUMNS:
        reason = f"{widest:,} columns: over the {MAX_CSV_COLUMNS:,} a table to read can have"
        raise LoadError(path, reason)
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


MAX_CSV_COLUMNS = 10_000  # wider is a data matrix, not a table to ask questions of

_LOADERS: dict[str, Callable[[Path, bytes], LoadedDocument]] = {
    ".txt": load_txt,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".csv": load_csv,
    **dict.fromkeys(IMAGE_TYPES, load_image),
}
