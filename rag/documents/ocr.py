"""Text from pictures of text: scanned PDF pages and image files, by OCR, offline.

The models are RapidOCR's ONNX detection, orientation and recognition models (PP-OCRv4), which
ship inside the ``rapidocr-onnxruntime`` wheel: nothing is downloaded at run time. They run on
the CPU through onnxruntime, a few seconds a page on two cores; the engine loads once per
process, on the first page that needs it.

Limits: the recognition model reads Latin script (with Chinese); other scripts come out
wrong. Lines are put in reading order top to bottom, left to right: two text columns side by
side are read across, line by line. Handwriting is not read. Pages are rendered at 200 dpi.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

RENDER_DPI = 200  # small print stays legible; higher costs time for no gain in accuracy
MIN_CONFIDENCE = 0.5  # recognised lines less certain than this are noise (stains, rules)

_engine: Any = None
_engine_lock = threading.Lock()


def _ocr_engine() -> Any:
    global _engine
    with _engine_lock:
        if _engine is None:
            from rapidocr_onnxruntime import RapidOCR

            _engine = RapidOCR()
        return _engine


def image_text(image: Image.Image) -> str:
    """The text in ``image``, one line of the picture per line of text."""
    import numpy as np

    found, _ = _ocr_engine()(np.asarray(image.convert("RGB")))
    boxes = []
    for box, text, confidence in found or []:
        if float(confidence) < MIN_CONFIDENCE or not str(text).strip():
            continue
        ys = [float(point[1]) for point in box]
        boxes.append((min(ys), max(ys), float(min(point[0] for point in box)), str(text)))
    return "\n".join(" ".join(text for *_, text in line) for line in _lines(boxes))


def _lines(
    boxes: list[tuple[float, float, float, str]],
) -> list[list[tuple[float, float, float, str]]]:
    """Boxes grouped into lines (vertical centres within half a line of each other), in order."""
    lines: list[list[tuple[float, float, float, str]]] = []
    for box in sorted(boxes, key=lambda b: (b[0] + b[1]) / 2):
        centre, height = (box[0] + box[1]) / 2, box[1] - box[0]
        last = lines[-1] if lines else None
        if last and abs(centre - (last[0][0] + last[0][1]) / 2) < max(height, 1) / 2:
            last.append(box)
        else:
            lines.append([box])
    return [sorted(line, key=lambda b: b[2]) for line in lines]


def pdf_page_image(data: bytes, page_number: int, dpi: int = RENDER_DPI) -> Image.Image:
    """Page ``page_number`` (1-based) of a PDF, rendered as a picture."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(data)
    try:
        page = document[page_number - 1]
        picture: Image.Image = page.render(scale=dpi / 72).to_pil()
        return picture
    finally:
        document.close()


def pdf_pages_with_images(data: bytes) -> set[int]:
    """The (1-based) pages of a PDF that show at least one picture: scans are pictures."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    document = pdfium.PdfDocument(data)
    try:
        return {
            number
            for number, page in enumerate(document, start=1)
            if next(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=2), None)
        }
    finally:
        document.close()
