"""The cited page as a picture: the passage is found among the page's characters and marked."""

from pathlib import Path

from fpdf import FPDF

from rag.documents.page_view import cited_page

PASSAGE = (
    "The pressure relief valve opens at three bar and must be tested once a year by a "
    "qualified engineer who signs the service record."
)


def manual(path: Path) -> Path:
    pdf = FPDF()
    pdf.set_font("helvetica", size=14)
    pdf.add_page()
    pdf.multi_cell(w=120, text="Page one says nothing about valves at all.")
    pdf.add_page()
    pdf.multi_cell(w=120, text="Safety first. " + PASSAGE + " Other text follows here.")
    pdf.output(str(path))
    return path


def test_the_passage_is_marked_line_by_line(tmp_path: Path) -> None:
    path = manual(tmp_path / "boiler.pdf")
    # As the excerpt shows it: one line, an omission marked, spacing of its own.
    view = cited_page(path, 2, "… " + " ".join(PASSAGE.split()) + " …")
    assert view.image.width > 800
    assert len(view.marks) >= 2  # the passage wraps: a box per line
    box = view.image.crop(view.marks[0]).convert("RGB")
    pixels = [box.getpixel((x, y)) for x in range(box.width) for y in range(box.height)]
    yellow = sum(
        1 for p in pixels if isinstance(p, tuple) and p[0] > 200 and p[1] > 180 and p[2] < 170
    )
    assert yellow > box.width * box.height / 2  # the background under the words is tinted


def test_a_passage_not_on_the_page_marks_nothing(tmp_path: Path) -> None:
    path = manual(tmp_path / "boiler.pdf")
    assert cited_page(path, 1, PASSAGE).marks == []
    assert cited_page(path, 2, "too short").marks == []
