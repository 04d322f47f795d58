"""A cited PDF page as a picture, with the cited passage marked on it, so a reader can check it.

The page is rendered by pdfium; the passage is found among the page's characters by its
letters and digits alone (case, spacing, line breaks, hyphenation and ligatures aside), one
stretch between '…' omissions at a time, and each line it covers gets a yellow box.

Limits: PDFs only; a passage that the page's text layer does not hold (an OCR'd scan) is shown
unmarked; text drawn rotated is boxed by its upright bounds.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rag.retrieval.retriever import sentences

if TYPE_CHECKING:
    from PIL import Image

VIEW_DPI = 110  # legible on a screen, small enough to send to the browser quickly
MIN_STRETCH = 12  # letters and digits: shorter stretches match by chance
_MARK = (255, 214, 0, 96)  # translucent yellow


@dataclass(frozen=True)
class PageView:
    """The rendered page and the boxes (pixels: left, top, right, bottom) marked on it."""

    image: Image.Image
    marks: list[tuple[int, int, int, int]]


def cited_page(path: Path, page: int, passage: str, dpi: int = VIEW_DPI) -> PageView:
    """Page ``page`` (1-based) of the PDF at ``path``, the ``passage`` marked where found."""
    import pypdfium2 as pdfium
    from PIL import Image, ImageDraw

    document = pdfium.PdfDocument(path)
    try:
        pdf_page = document[page - 1]
        scale = dpi / 72
        image = pdf_page.render(scale=scale).to_pil().convert("RGBA")
        height = pdf_page.get_height()
        text_page = pdf_page.get_textpage()
        boxes = _passage_boxes(text_page, passage)
    finally:
        document.close()
    marks = [
        (
            int(left * scale),
            int((height - top) * scale),
            int(right * scale) + 1,
            int((height - bottom) * scale) + 1,
        )
        for left, bottom, right, top in boxes
    ]
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for mark in marks:
        draw.rectangle(mark, fill=_MARK)
    return PageView(Image.alpha_composite(image, layer).convert("RGB"), marks)


def _passage_boxes(text_page: object, passage: str) -> list[tuple[float, float, float, float]]:
    """PDF-space boxes (left, bottom, right, top), a box per line, around each found stretch."""
    import pypdfium2.raw as pdfium_c

    raw = text_page.raw  # type: ignore[attr-defined]
    letters: list[str] = []
    owners: list[int] = []  # the page character each normalised letter comes from
    for index in range(pdfium_c.FPDFText_CountChars(raw)):
        for letter in _letters(chr(pdfium_c.FPDFText_GetUnicode(raw, index))):
            letters.append(letter)
            owners.append(index)
    page_letters = "".join(letters)
    boxes: list[tuple[float, float, float, float]] = []
    for stretch in passage.split("…"):
        # A stretch that runs on past the page's end is found sentence by sentence.
        for part in [stretch] if _find(page_letters, stretch) >= 0 else sentences(stretch):
            wanted = "".join(_letters(part))
            at = _find(page_letters, part)
            if at < 0:
                continue
            chars = sorted(set(owners[at : at + len(wanted)]))
            boxes += _line_boxes([text_page.get_charbox(i) for i in chars])  # type: ignore[attr-defined]
    return boxes


def _find(page_letters: str, text: str) -> int:
    """Where ``text``'s letters start among the page's, or -1 (also when too short to tell)."""
    wanted = "".join(_letters(text))
    return page_letters.find(wanted) if len(wanted) >= MIN_STRETCH else -1


def _letters(text: str) -> list[str]:
    """Letters and digits of ``text``, case-folded and compatibility-normalised (ligatures)."""
    return [c for c in unicodedata.normalize("NFKC", text).casefold() if c.isalnum()]


def _line_boxes(
    chars: list[tuple[float, float, float, float]],
) -> list[tuple[float, float, float, float]]:
    """Character boxes merged into one box per line of text."""
    lines: list[list[float]] = []
    for left, bottom, right, top in chars:
        if right <= left or top <= bottom:
            continue  # spaces and generated characters have no extent
        last = lines[-1] if lines else None
        if last and bottom < last[3] and top > last[1] and left >= last[0] - 2:
            last[0], last[1] = min(last[0], left), min(last[1], bottom)
            last[2], last[3] = max(last[2], right), max(last[3], top)
        else:
            lines.append([left, bottom, right, top])
    return [(a, b, c, d) for a, b, c, d in lines]
