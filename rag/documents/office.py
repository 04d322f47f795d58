"""Word documents (headings and tables) and CSV files (each row whole, as column: value lines).

Limits: a DOCX that would unpack to more than ``MAX_INFLATION`` times its size (and
``MAX_INFLATED_MB``) is refused before unpacking, as is a CSV wider than ``MAX_CSV_COLUMNS``.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path

from rag.documents.document import (
    DocumentBuilder,
    LoadedDocument,
    LoadError,
    decode_text,
)


def load_docx(path: Path, data: bytes) -> LoadedDocument:
    """Word document paragraphs and tables in order; Heading and Title styles start sections."""
    import docx
    from docx.table import Table

    _check_inflated_size(path, data)
    document = docx.Document(io.BytesIO(data))
    builder = DocumentBuilder()
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
    builder = DocumentBuilder()
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
