"""Writers for real documents of every supported type, used by the tests and the sample data."""

from __future__ import annotations

import csv
from pathlib import Path


def write_pdf(path: Path, pages: list[list[str]], title: str = "") -> Path:
    """A real PDF: one list of paragraphs per page."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title(title)
    for paragraphs in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph)
            pdf.ln(3)
    pdf.output(str(path))
    return path


def write_docx(path: Path, blocks: list[tuple[str, str]]) -> Path:
    """A real DOCX: blocks are (style, text); style 'h1'..'h3', 'p', or 'table:a|b;c|d'."""
    import docx

    document = docx.Document()
    for style, text in blocks:
        if style.startswith("h"):
            document.add_heading(text, level=int(style[1:]))
        elif style == "table":
            rows = [row.split("|") for row in text.split(";")]
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            for r, row in enumerate(rows):
                for c, cell in enumerate(row):
                    table.cell(r, c).text = cell
        else:
            document.add_paragraph(text)
    document.save(str(path))
    return path


def write_csv(
    path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8"
) -> Path:
    """A CSV file with a header row."""
    with path.open("w", newline="", encoding=encoding) as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_html(path: Path, title: str, sections: list[tuple[str, list[str]]]) -> Path:
    """An HTML page with a script and a style that must not be ingested."""
    body = "".join(
        f"<h2>{heading}</h2>" + "".join(f"<p>{p}</p>" for p in paragraphs)
        for heading, paragraphs in sections
    )
    path.write_text(
        "<!doctype html><html><head><title>t</title><style>p {color: red}</style>"
        "<script>var secret = 'SCRIPT_TEXT';</script></head>"
        f"<body><h1>{title}</h1>{body}<script>alert('SCRIPT_TEXT')</script></body></html>",
        encoding="utf-8",
    )
    return path


def paragraphs(topic: str, count: int, sentences: int = 6) -> list[str]:
    """Distinct filler paragraphs about ``topic`` (deterministic)."""
    return [
        " ".join(
            f"Paragraph {p} of {topic} says fact {p}.{s} about the {topic} in plain words."
            for s in range(sentences)
        )
        for p in range(count)
    ]


def write_mixed_folder(folder: Path) -> dict[str, str]:
    """One document of each supported type; returns source -> a phrase unique to it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text(
        "Field notes\n===========\n\n"
        + "\n\n".join(paragraphs("heron", 3))
        + "\n\nThe heron nests near the old mill.\n"
    )
    (folder / "guide.md").write_text(
        "# Garden guide\n\n## Tomatoes\n\n"
        + "\n\n".join(paragraphs("tomato", 2))
        + "\n\nWater tomatoes at dawn.\n\n## Beans\n\nBeans climb the trellis.\n"
    )
    write_html(
        folder / "page.html", "Lighthouse", [("Lamp", ["The lamp turns every ten seconds."])]
    )
    write_pdf(
        folder / "manual.pdf",
        [["Chapter one covers the boiler."], ["The boiler pressure must stay below 3 bar."]],
    )
    write_docx(
        folder / "report.docx",
        [("h1", "Annual report"), ("p", "Revenue grew by nine percent."), ("table", "a|b;c|d")],
    )
    write_csv(folder / "parts.csv", ["part", "price"], [["sprocket", "12"], ["chain", "30"]])
    sub = folder / "sub"
    sub.mkdir(exist_ok=True)
    (sub / "deep.txt").write_text("The deep file mentions the walrus.\n")
    return {
        "notes.txt": "heron nests near the old mill",
        "guide.md": "Water tomatoes at dawn",
        "page.html": "lamp turns every ten seconds",
        "manual.pdf": "boiler pressure must stay below 3 bar",
        "report.docx": "Revenue grew by nine percent",
        "parts.csv": "part: sprocket",
        "sub/deep.txt": "walrus",
    }
