"""Tables: CSV, Excel (.xlsx) and OpenDocument (.ods) spreadsheets, each row kept whole.

A row becomes ``column: value`` lines under the sheet's header row (its first row with a
value), so a chunk never cuts a row and a value keeps its column's name. Each sheet is a
section headed by its name and numbered as a page; a chunk's citation names the sheet and
the rows it holds ("sheet Costs, rows 2–14"). Hidden sheets are left out and counted.

Limits: a workbook must unpack within the zip-bomb bounds; past ``MAX_CELLS`` cells (empty
ones padded between values included) or ``MAX_COLUMNS`` columns it is refused, not cut.
Formulas give the value the file last saved (none when no spreadsheet program computed it).
"""

from __future__ import annotations

import csv
import datetime
import io
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rag.documents.document import (
    DocumentBuilder,
    LoadedDocument,
    LoadError,
    check_unpacked_size,
    decode_text,
    strip_invisible,
)

MAX_COLUMNS = 10_000  # wider is a data matrix, not a table to ask questions of


MAX_CELLS = 2_000_000  # cells of a workbook read at most (100,000 rows of 20 columns fit)


Row = Sequence[str]


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
    builder = DocumentBuilder()
    _add_table(path, builder, enumerate(rows, start=1), (), None, None)
    return builder.build()


def load_xlsx(path: Path, data: bytes) -> LoadedDocument:
    """An Excel workbook, a section per visible sheet (openpyxl, read a row at a time)."""
    import openpyxl

    check_unpacked_size(path, data)
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        sheets = []
        for sheet in book.worksheets:
            if hasattr(sheet, "reset_dimensions"):
                sheet.reset_dimensions()  # the size a file declares can be a lie: read the rows
            rows = (tuple(_cell_text(v) for v in row) for row in sheet.iter_rows(values_only=True))
            sheets.append((sheet.title, sheet.sheet_state != "visible", enumerate(rows, 1)))
        return _sheets(path, sheets)
    finally:
        book.close()


def load_ods(path: Path, data: bytes) -> LoadedDocument:
    """An OpenDocument spreadsheet, a section per visible sheet (odfpy)."""
    from odf.opendocument import load as load_odf
    from odf.table import Table

    check_unpacked_size(path, data)
    document = load_odf(io.BytesIO(data))
    hidden = _hidden_table_styles(document)
    sheets = [
        (
            str(table.getAttribute("name")),
            table.getAttribute("stylename") in hidden,
            _ods_rows(path, table),
        )
        for table in document.spreadsheet.getElementsByType(Table)
    ]
    return _sheets(path, sheets)


def _sheets(
    path: Path, sheets: Iterable[tuple[str, bool, Iterator[tuple[int, Row]]]]
) -> LoadedDocument:
    """A workbook's sheets, numbered as pages; hidden ones counted, not kept."""
    builder = DocumentBuilder()
    cells = 0

    def counted(rows: Iterable[tuple[int, Row]]) -> Iterator[tuple[int, Row]]:
        """The rows, refused once the workbook's cells pass ``MAX_CELLS``."""
        nonlocal cells
        for number, row in rows:
            cells += len(row)
            if cells > MAX_CELLS:
                reason = f"more than {MAX_CELLS:,} cells: too large a workbook to read"
                raise LoadError(path, reason)
            yield number, row

    number = 0
    for name, hidden, rows in sheets:
        if hidden:
            builder.hidden_chars += sum(len("".join(row)) for _, row in counted(rows))
            continue
        number += 1
        _add_table(path, builder, counted(rows), (name,), number, f"sheet {name}")
    return builder.build()


def _add_table(
    path: Path,
    builder: DocumentBuilder,
    rows: Iterable[tuple[int, Row]],
    headings: tuple[str, ...],
    page: int | None,
    location: str | None,
) -> None:
    """Rows under the first one with a value (the header), each as 'column: value' lines."""
    header: Row | None = None
    header_row = 0
    added = False
    for number, row in rows:
        if len(row) > MAX_COLUMNS:
            reason = f"{len(row):,} columns: over the {MAX_COLUMNS:,} a table to read can have"
            raise LoadError(path, reason)
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header, header_row = row, number
            continue
        names = [*header, *[""] * (len(row) - len(header))]
        lines = [
            f"{name.strip()}: {cell.strip()}" if name.strip() else cell.strip()
            for name, cell in zip(names, row, strict=False)
            if cell.strip()
        ]
        builder.add("\n".join(lines), headings, page, location, number)
        added = True
    if header is not None and not added:  # a table of one row: the row is the content
        text = "\n".join(cell.strip() for cell in header if cell.strip())
        builder.add(text, headings, page, location, header_row)


def _cell_text(value: Any) -> str:
    """A cell's value as a person reads it: 12 not 12.0, dates without a midnight time."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime) and value.time() == datetime.time():
        return value.date().isoformat()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return strip_invisible(str(value))[0]


def _ods_rows(path: Path, table: Any) -> Iterator[tuple[int, Row]]:
    """(row number, cell texts) of an ODF table; repeated rows and cells expanded, bounded.

    ODF writes a run of equal cells or rows once with a repeat count (an empty sheet is one
    row repeated 1,048,576 times): empty runs only move the row number, and a run with a
    value is expanded no further than the bounds allow.
    """
    from odf import teletype
    from odf.namespaces import TABLENS
    from odf.table import TableRow

    number = 1
    for row in table.getElementsByType(TableRow):
        repeat = int(row.getAttribute("numberrowsrepeated") or 1)
        cells: list[str] = []
        for cell in row.childNodes:
            if cell.qname not in ((TABLENS, "table-cell"), (TABLENS, "covered-table-cell")):
                continue
            text = teletype.extractText(cell)
            times = int(cell.getAttribute("numbercolumnsrepeated") or 1)
            room = MAX_COLUMNS + 1 - len(cells)  # one more than fits: the row is then refused
            cells.extend([text] * max(0, min(times, room)))
        while cells and not cells[-1]:
            cells.pop()
        if not cells:
            number += repeat
            continue
        for _ in range(min(repeat, MAX_CELLS // len(cells) + 1)):
            yield number, cells
            number += 1


def _hidden_table_styles(document: Any) -> set[str]:
    """Names of the table styles that hide a sheet (``table:display="false"``)."""
    from odf.style import Style, TableProperties

    hidden = set()
    for style in document.automaticstyles.getElementsByType(Style):
        for properties in style.getElementsByType(TableProperties):
            if str(properties.getAttribute("display")).lower() == "false":
                hidden.add(style.getAttribute("name"))
    return hidden
