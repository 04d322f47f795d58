"""Scanned pages and images: the real OCR models, on pages the tests draw themselves."""

import io
from pathlib import Path

import pytest
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

from rag.documents.document import LoadError
from rag.documents.loaders import load

pytestmark = pytest.mark.slow

LINES = ["Boiler service record", "The pressure relief valve opens at 3 bar."]
SECOND = ["Heat pump notes", "Replace the anode every 18 months."]


def picture(lines: list[str]) -> Image.Image:
    """A white page with black print, as a scanner gives it."""
    page = Image.new("L", (1240, 700), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=36)
    for i, line in enumerate(lines):
        draw.text((100, 120 + i * 80), line, font=font, fill=0)
    return page


def encoded(image: Image.Image, kind: str) -> bytes:
    out = io.BytesIO()
    image.save(out, kind)
    return out.getvalue()


def test_an_image_is_read_by_ocr() -> None:
    document = load(Path("scan.png"), encoded(picture(LINES), "PNG"))
    assert document.text.splitlines() == LINES
    assert document.ocr_pages == 1
    assert document.sections[0].page is None
    jpeg = load(Path("scan.jpg"), encoded(picture(LINES), "JPEG"))
    assert "relief valve opens at 3 bar" in jpeg.text


def test_each_page_of_a_tiff_is_a_page() -> None:
    pages = [picture(LINES).convert("RGB"), picture(SECOND).convert("RGB")]
    out = io.BytesIO()
    pages[0].save(out, "TIFF", save_all=True, append_images=pages[1:])
    document = load(Path("scans.tiff"), out.getvalue())
    by_page = {s.page: document.text[s.start : s.end] for s in document.sections}
    assert "3 bar" in by_page[1]
    assert "18 months" in by_page[2]
    assert "18 months" not in by_page[1]


def scanned_pdf() -> bytes:
    """Page 1 and 3 have a text layer; page 2 is only a picture of print, as a scan is."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.cell(text="Typed page one: the boiler manual.")
    pdf.add_page()
    pdf.image(io.BytesIO(encoded(picture(LINES), "PNG")), x=0, y=0, w=210)
    pdf.add_page()
    pdf.cell(text="Typed page three: the index.")
    return bytes(pdf.output())


def test_a_scanned_pdf_page_is_read_by_ocr_and_keeps_its_page() -> None:
    document = load(Path("manual.pdf"), scanned_pdf())
    by_page = {s.page: document.text[s.start : s.end] for s in document.sections}
    assert "The pressure relief valve opens at 3 bar." in by_page[2]
    assert "Typed page one" in by_page[1]
    assert "Typed page three" in by_page[3]
    assert document.ocr_pages == 1


def test_ocr_off_leaves_pictures_unread_and_says_so() -> None:
    document = load(Path("manual.pdf"), scanned_pdf(), ocr=False)
    assert "relief valve" not in document.text
    assert document.ocr_pages == 0
    with pytest.raises(LoadError, match=r"ingest\.ocr is off"):
        load(Path("scan.png"), encoded(picture(LINES), "PNG"), ocr=False)
