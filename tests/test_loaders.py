from pathlib import Path

import pytest

from rag.documents.document import LoadError
from rag.documents.loaders import load
from tests.docgen import write_csv, write_docx, write_html, write_mixed_folder, write_pdf


@pytest.fixture
def mixed(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    return tmp_path, write_mixed_folder(tmp_path)


@pytest.mark.parametrize(
    "source", ["notes.txt", "guide.md", "page.html", "manual.pdf", "report.docx", "parts.csv"]
)
def test_every_type_loads_its_text(mixed: tuple[Path, dict[str, str]], source: str) -> None:
    folder, phrases = mixed
    document = load(folder / source)
    assert phrases[source] in document.text
    assert document.sections
    for section in document.sections:
        assert 0 <= section.start < section.end <= len(document.text)


def test_markdown_heading_path(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_text(
        "# Top\n\nintro\n\n## Sub\n\nbody\n\n```\n# not a heading\n```\n\n# Next\n\nend\n"
    )
    document = load(path)
    by_text = {document.text[s.start : s.end].strip().split("\n")[-1]: s for s in document.sections}
    assert [s.headings for s in document.sections] == [("Top",), ("Top", "Sub"), ("Next",)]
    assert by_text["```"].headings == ("Top", "Sub")


def test_text_underlined_titles_are_headings(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("Title\n*****\n\nintro\n\nPart\n====\n\nbody\n\nOther\n*****\n\nx\n")
    assert [s.headings for s in load(path).sections] == [("Title",), ("Title", "Part"), ("Other",)]


def test_txt_offsets_point_into_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("Title\n=====\n\nfirst\n\nSecond\n------\n\nsecond\n")
    document = load(path)
    assert document.text == path.read_text()


def test_html_drops_scripts_and_styles_keeps_headings(tmp_path: Path) -> None:
    path = write_html(tmp_path / "p.html", "Main", [("Part", ["Some <b>bold</b> words."])])
    document = load(path)
    assert "SCRIPT_TEXT" not in document.text
    assert "color: red" not in document.text
    assert "Some bold words." in document.text
    assert ("Main", "Part") in [s.headings for s in document.sections]


def test_pdf_keeps_page_numbers(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "m.pdf", [["alpha page"], ["beta page"], ["gamma page"]])
    document = load(path)
    pages = {document.text[s.start : s.end].strip(): s.page for s in document.sections}
    assert pages == {"alpha page": 1, "beta page": 2, "gamma page": 3}


def test_docx_headings_and_tables(tmp_path: Path) -> None:
    path = write_docx(
        tmp_path / "d.docx",
        [("h1", "Intro"), ("p", "hello"), ("h2", "Detail"), ("table", "k|v;size|9")],
    )
    document = load(path)
    assert "size | 9" in document.text
    assert [s.headings for s in document.sections] == [("Intro",), ("Intro", "Detail")]


def test_csv_rows_stay_whole(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ["name", "note"], [["a", "x, with comma"], ["b", "y"]])
    document = load(path)
    assert "name: a\nnote: x, with comma" in document.text
    assert document.text.count("\n\n") == 1  # one blank line between the two rows


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("latin-1", "Café crème, naïve façade, déjà vu, señor, smörgåsbord für Müller."),
        ("cp1252", "Prices in €: the “best” café — déjà vu, naïve façade, crème brûlée."),
        ("cp1251", "Привет, как дела? Это тестовый текст на русском языке."),
        ("utf-16", "Grüße aus Köln: Straße, Äpfel und Öl für die Küche."),
        ("utf-8-sig", "BOM first: Ωmega and ☃ snowman."),
    ],
)
def test_legacy_encodings_decode(tmp_path: Path, encoding: str, text: str) -> None:
    path = tmp_path / "enc.txt"
    path.write_bytes(((text + "\n") * 5).encode(encoding))
    assert load(path).text.strip().split("\n")[0] == text


def test_csv_in_latin1(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ["ville"], [["Zürich"], ["Genève"]], encoding="latin-1")
    assert "ville: Genève" in load(path).text


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.txt", b"", "empty file"),
        ("blank.md", b"  \n\n ", "empty file"),
        ("binary.txt", bytes(range(256)) * 40, "binary"),
        ("corrupt.pdf", b"%PDF-1.4\n garbage that is no pdf at all", "cannot parse .pdf"),
        ("corrupt.docx", b"PK\x03\x04 not really a zip", "cannot parse .docx"),
        ("photo.jpg", b"\xff\xd8\xff", "not a readable image (a broken or partial file)"),
        ("movie.mp4", b"\x00\x00\x00\x18ftypmp42", "binary data, not text"),
        ("broken.pptx", b"PK\x03\x04 not really a zip", "cannot parse .pptx"),
        ("broken.xlsx", b"PK\x03\x04 not really a zip", "cannot parse .xlsx"),
        ("broken.ods", b"PK\x03\x04 not really a zip", "cannot parse .ods"),
        ("broken.odt", b"PK\x03\x04 not really a zip", "cannot parse .odt"),
        ("broken.epub", b"PK\x03\x04 not really a zip", "cannot parse .epub"),
        ("broken.rtf", b"just words, no rtf header", "not an RTF file"),
        ("broken.mbox", b"Subject: no From line first\n\nhello\n", "not an mbox mailbox"),
        ("broken.eml", b"\x00\x01\x02 binary junk", "not a mail message"),
    ],
)
def test_bad_input_names_file_and_reason(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(LoadError) as raised:
        load(path)
    assert reason in raised.value.reason
    assert str(path) in str(raised.value)


def test_a_csv_wider_than_a_table_is_refused(tmp_path: Path) -> None:
    from rag.documents.sheets import MAX_COLUMNS as MAX_CSV_COLUMNS
    from tests.hostile import wide_csv

    load(wide_csv(tmp_path / "fits.csv", columns=MAX_CSV_COLUMNS))
    with pytest.raises(LoadError, match="10,001 columns: over the 10,000"):
        load(wide_csv(tmp_path / "wide.csv", columns=MAX_CSV_COLUMNS + 1))


def test_pdf_text_is_words_as_typed(tmp_path: Path) -> None:
    from rag.documents.pdf import clean_pdf_text

    assert clean_pdf_text("de\ufb01ning \ufb02oating objects") == "defining floating objects"
    assert clean_pdf_text("a float-\ning point and a 3-\nD plot, Ameri-\nCa") == (
        "a floating point and a 3-\nD plot, Ameri-\nCa"
    )


@pytest.mark.slow
def test_real_pdfs_read_clean_and_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import ROOT

    corpus = ROOT.parent / "shared" / "eval" / "rmanuals" / "corpus"
    if not corpus.is_dir():
        pytest.skip("the shared rmanuals set is not here")
    for name in ("R-data.pdf", "R-lang.pdf"):
        text = load(corpus / name).text
        assert not any(ligature in text for ligature in "\ufb00\ufb01\ufb02\ufb03\ufb04")
        assert "re-\nusable" not in text
    captured = capfd.readouterr()
    assert captured.err == ""  # pypdf's warnings stay off the terminal


def two_column_pdf(path: Path, cells: bool = False) -> Path:
    """A title across the page, then two columns whose lines are drawn row by row, left and
    right in turn (as some typesetters write them); with ``cells``, a two-column table."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=10)
    pdf.add_page()
    pdf.set_xy(10, 10)
    pdf.cell(text="A title across the whole page, above both columns of the story")
    for i in range(1, 9):
        pdf.set_xy(10, 20 + i * 6)
        pdf.cell(text=f"Part {i}" if cells else f"left column line {i} of the first story")
        pdf.set_xy(110, 20 + i * 6)
        pdf.cell(text=f"{i} bar" if cells else f"right column line {i} of the other story")
    pdf.output(str(path))
    return path


def test_a_two_column_page_is_read_column_by_column(tmp_path: Path) -> None:
    text = load(two_column_pdf(tmp_path / "paper.pdf")).text
    lines = text.splitlines()
    assert lines[0].startswith("A title across the whole page")
    assert lines[1:9] == [f"left column line {i} of the first story" for i in range(1, 9)]
    assert lines[9:] == [f"right column line {i} of the other story" for i in range(1, 9)]
    # A table's short cells are rows, not columns: each part keeps its value.
    table = load(two_column_pdf(tmp_path / "table.pdf", cells=True)).text
    assert "Part 3 3 bar" in " ".join(table.split())


def test_html_navigation_is_left_out_and_counted(tmp_path: Path) -> None:
    page = tmp_path / "manual.html"
    page.write_text(
        "<html><body>"
        '<header><a href="/">Home</a> <a href="/docs">Docs</a></header>'
        '<nav aria-label="breadcrumb"><a href="/">Home</a> &gt; Manual</nav>'
        '<div class="header"><p>Next: <a href="i.html">Index</a>, Previous: '
        '<a href="m.html">Memory Usage</a>, Up: <a href="t.html">libffi</a></p></div>'
        "<main><article><header><h1>Missing Features</h1></header>"
        "<p>Up: the main page lists every chapter.</p>"
        "<p>libffi is missing a few features.</p>"
        '<ul><li><a href="a.html">Introduction</a></li><li><a href="b.html">Using</a></li>'
        '<li><a href="c.html">Memory</a></li></ul>'
        "<ul><li>Variadic closures.</li><li>Bit fields.</li><li>The raw API.</li></ul>"
        "<p>Previous: Memory Usage, Next: Index</p>"
        "</article></main><footer>Copyright notice and site links</footer></body></html>"
    )
    document = load(page)
    assert document.text.split("\n\n") == [
        "Missing Features",
        "Up: the main page lists every chapter.",  # one navigation word is prose
        "libffi is missing a few features.",
        "Variadic closures.",
        "Bit fields.",
        "The raw API.",
    ]
    assert document.navigation_chars > 100
