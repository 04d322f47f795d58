"""PDF: text page by page, as a reader sees it; a scanned page read by OCR.

Ligatures become letters, words hyphenated across a line end are joined, a page set in two
columns is read column by column, and the parser's warnings are reported once per file. Text
drawn invisible (render mode 3 or 7), in white, or off the page is left out and counted.
Limits: text hidden under an image, or in a colour close to but not exactly the background, is
kept.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.documents.document import (
    DocumentBuilder,
    LoadedDocument,
    LoadError,
)
from rag.documents.ocr import image_text, pdf_page_image, pdf_pages_with_images


def load_pdf(path: Path, data: bytes, ocr: bool = True) -> LoadedDocument:
    """PDF text page by page; each chunk keeps its page number.

    A page without a text layer that shows a picture (a scan) is read by OCR when ``ocr``.
    """
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted and not reader.decrypt(""):
        raise LoadError(path, "encrypted PDF (needs a password)")
    builder = DocumentBuilder()
    pictures: set[int] | None = None  # pages showing a picture, looked up on the first need
    ocr_pages = 0
    with _captured_warnings("pypdf") as warnings:
        for number, page in enumerate(reader.pages, start=1):
            text, hidden = visible_pdf_text(page)
            if ocr and len(text.strip()) < MIN_PAGE_CHARS:
                if pictures is None:
                    pictures = pdf_pages_with_images(data)
                if number in pictures:
                    text, hidden = image_text(pdf_page_image(data, number)), 0
                    ocr_pages += 1
            builder.add(clean_pdf_text(text), page=number)
            builder.hidden_chars += hidden
    document = builder.build()
    document.parser_warnings = warnings
    document.ocr_pages = ocr_pages
    if not document.text.strip():
        why = "" if ocr else " (ingest.ocr is off: scanned pages are not read)"
        raise LoadError(path, f"no text in the PDF{why}")
    return document


MIN_PAGE_CHARS = 20  # a page with less text than this, and a picture, is a scan: OCR reads it


_HYPHENATED = re.compile(r"([^\W\d_])-\n([^\W\d_A-Z])")  # "float-\ning", not "3-\nD"


def clean_pdf_text(text: str) -> str:
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


def visible_pdf_text(page: Any) -> tuple[str, int]:
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
