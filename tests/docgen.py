"""Writers for real documents of every supported type, used by the tests and the sample data."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from email.message import EmailMessage
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


# --- slides, sheets, e-books, mail: each written by its format's own library ----------------


def write_pptx(path: Path, slides: list[tuple[str, list[str], str]], hidden: int = 0) -> Path:
    """A real PPTX (python-pptx): slides of (title, bullet lines, speaker notes).

    ``hidden``: the number (1-based) of a slide marked hidden, or 0.
    """
    from pptx import Presentation

    deck = Presentation()
    for number, (title, lines, notes) in enumerate(slides, start=1):
        slide = deck.slides.add_slide(deck.slide_layouts[1])  # title and content
        slide.shapes.title.text = title
        body = slide.placeholders[1].text_frame
        body.text = lines[0] if lines else ""
        for line in lines[1:]:
            body.add_paragraph().text = line
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
        if number == hidden:
            slide.element.set("show", "0")
    deck.save(str(path))
    return path


def write_xlsx(path: Path, sheets: dict[str, list[list[object]]], hidden: str = "") -> Path:
    """A real XLSX (openpyxl): sheets by name, each a list of rows (the first the header)."""
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
        if name == hidden:
            sheet.sheet_state = "hidden"
    book.save(str(path))
    return path


def write_ods(path: Path, sheets: dict[str, list[list[str]]]) -> Path:
    """A real ODS (odfpy): sheets by name, each a list of rows of text cells."""
    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.table import Table, TableCell, TableRow
    from odf.text import P

    document = OpenDocumentSpreadsheet()
    for name, rows in sheets.items():
        table = Table(name=name)
        for row in rows:
            table_row = TableRow()
            for value in row:
                cell = TableCell(valuetype="string")
                cell.addElement(P(text=value))
                table_row.addElement(cell)
            table.addElement(table_row)
        document.spreadsheet.addElement(table)
    document.save(str(path))
    return path


def write_odt(path: Path, blocks: list[tuple[str, str]]) -> Path:
    """A real ODT (odfpy): blocks are (style, text); style 'h1'..'h3', 'p' or 'table:a|b;c|d'."""
    from odf.opendocument import OpenDocumentText
    from odf.table import Table, TableCell, TableRow
    from odf.text import H, P

    document = OpenDocumentText()
    for style, text in blocks:
        if style.startswith("h"):
            document.text.addElement(H(outlinelevel=int(style[1:]), text=text))
        elif style == "table":
            table = Table()
            for row in text.split(";"):
                table_row = TableRow()
                for value in row.split("|"):
                    cell = TableCell()
                    cell.addElement(P(text=value))
                    table_row.addElement(cell)
                table.addElement(table_row)
            document.text.addElement(table)
        else:
            document.text.addElement(P(text=text))
    document.save(str(path))
    return path


def write_rtf(path: Path, title: str, paragraphs: list[str]) -> Path:
    """An RTF file as word processors write it: font table, \\par, \\'hh and \\uN escapes.

    No permissively licensed library writes RTF, so the control words are written here,
    by the specification (RTF 1.9.1).
    """

    def escaped(text: str) -> str:
        out = []
        for char in text:
            if char in "\\{}":
                out.append("\\" + char)
            elif ord(char) < 128:
                out.append(char)
            elif ord(char) < 256:
                out.append(f"\\'{ord(char):02x}")
            else:
                out.append(f"\\u{ord(char) if ord(char) < 32768 else ord(char) - 65536}?")
        return "".join(out)

    body = "".join(f"{{\\pard\\f0\\fs22 {escaped(p)}\\par}}\n" for p in paragraphs)
    path.write_text(
        "{\\rtf1\\ansi\\ansicpg1252\\deff0{\\fonttbl{\\f0\\fswiss Helvetica;}}\n"
        "{\\info{\\title " + escaped(title) + "}}\n"
        f"{{\\pard\\b\\fs32 {escaped(title)}\\par}}\n{body}}}",
        encoding="ascii",
    )
    return path


def write_epub(path: Path, title: str, chapters: list[tuple[str, str]]) -> Path:
    """A real EPUB 3, written with the standard library's zip writer as the specification
    lays it out (no permissively licensed EPUB writer is well kept): a mimetype stored first,
    the container, the package document with its spine, a nav document, one XHTML file per
    (chapter title, paragraph)."""
    import zipfile

    files = {f"text/ch{n}.xhtml": chapter for n, chapter in enumerate(chapters, start=1)}
    manifest = "".join(
        f'<item id="c{n}" href="{name}" media-type="application/xhtml+xml"/>'
        for n, name in enumerate(files, start=1)
    )
    spine = "".join(f'<itemref idref="c{n}"/>' for n in range(1, len(files) + 1))
    toc = "".join(f'<li><a href="{name}">{t}</a></li>' for name, (t, _) in files.items())
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")  # stored
        book.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container version="1.0" '
            'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
            '<rootfile full-path="OEBPS/book.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
        )
        book.writestr(
            "OEBPS/book.opf",
            '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0" '
            'unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f'<dc:identifier id="id">urn:uuid:rag-test</dc:identifier><dc:title>{title}'
            "</dc:title><dc:language>en</dc:language></metadata><manifest>"
            '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" '
            f'properties="nav"/>{manifest}</manifest><spine>{spine}</spine></package>',
        )
        xhtml = '<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml" '
        xhtml += 'xmlns:epub="http://www.idpf.org/2007/ops">'
        book.writestr(
            "OEBPS/nav.xhtml",
            f'{xhtml}<head><title>{title}</title></head><body><nav epub:type="toc">'
            f"<h1>Contents</h1><ol>{toc}</ol></nav></body></html>",
        )
        for name, (chapter_title, text) in files.items():
            book.writestr(
                f"OEBPS/{name}",
                f"{xhtml}<head><title>{chapter_title}</title></head><body>"
                f"<h1>{chapter_title}</h1><p>{text}</p></body></html>",
            )
    return path


def mail_message(
    subject: str,
    body: str,
    attachments: Sequence[Path] = (),
    html: bool = False,
    sender: str = "Ada Lovelace <ada@example.org>",
) -> EmailMessage:
    """A real message (the standard library's email package), with files attached."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "Charles Babbage <charles@example.org>"
    message["Date"] = "Thu, 03 Dec 2026 10:15:00 +0000"
    message["Subject"] = subject
    if html:
        message.set_content(body, subtype="html")
    else:
        message.set_content(body)
    for attachment in attachments:
        message.add_attachment(
            attachment.read_bytes(),
            maintype="application",
            subtype="octet-stream",
            filename=attachment.name,
        )
    return message


def write_eml(path: Path, message: EmailMessage) -> Path:
    """A message as an .eml file."""
    path.write_bytes(bytes(message))
    return path


def write_mbox(path: Path, messages: list[EmailMessage]) -> Path:
    """Messages in an mbox mailbox (the standard library's mailbox module)."""
    import mailbox

    box = mailbox.mbox(str(path))
    try:
        for message in messages:
            box.add(message)
    finally:
        box.close()
    return path
