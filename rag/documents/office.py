"""Documents of office suites: Word (.docx), PowerPoint (.pptx) and OpenDocument text (.odt).

Headings are kept as headings (a slide's title heads its slide), tables as rows of cells
joined by " | ", and each slide is a page ("slide 3"), its speaker notes after it, marked.
Hidden slides are left out and counted.

Limits: an archive that would unpack too far is refused before unpacking
(:func:`check_unpacked_size`); charts, pictures and embedded objects are not read.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag.documents.document import (
    DocumentBuilder,
    LoadedDocument,
    check_unpacked_size,
)


def load_docx(path: Path, data: bytes) -> LoadedDocument:
    """Word document paragraphs and tables in order; Heading and Title styles start sections."""
    import docx
    from docx.table import Table

    check_unpacked_size(path, data)
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


def _docx_heading_level(style: str) -> int | None:
    """'Heading 2' -> 2; any other style -> None."""
    match = re.fullmatch(r"Heading (\d)", style)
    return int(match.group(1)) if match else None


def load_pptx(path: Path, data: bytes) -> LoadedDocument:
    """Each visible slide as a page: its title as heading, its text and tables, its notes."""
    from pptx import Presentation

    check_unpacked_size(path, data)
    deck = Presentation(io.BytesIO(data))
    builder = DocumentBuilder()
    for number, slide in enumerate(deck.slides, start=1):
        texts = list(_shape_texts(slide.shapes))
        notes = ""
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = slide.notes_slide.notes_text_frame.text.strip()
        if slide.element.get("show") == "0":  # a hidden slide: not shown when presenting
            builder.hidden_chars += sum(len(text) for text in texts) + len(notes)
            continue
        title = slide.shapes.title
        heading = title.text_frame.text.strip() if title is not None else ""
        headings = (" ".join(heading.split()),) if heading else ()
        for text in texts:
            builder.add(text, headings, number, f"slide {number}")
        if notes:
            builder.add(f"Speaker notes: {notes}", headings, number, f"slide {number}")
    return builder.build()


def _shape_texts(shapes: Any) -> Iterator[str]:
    """The text of each shape in order: text frames, table rows, the shapes of a group."""
    for shape in shapes:
        if shape.shape_type is not None and hasattr(shape, "shapes"):  # a group
            yield from _shape_texts(shape.shapes)
        elif getattr(shape, "has_table", False):
            for row in shape.table.rows:
                cells = [cell.text.strip() for cell in row.cells]
                yield " | ".join(c for c in cells if c)
        elif getattr(shape, "has_text_frame", False):
            yield shape.text_frame.text


def load_odt(path: Path, data: bytes) -> LoadedDocument:
    """OpenDocument text: headings by outline level, paragraphs, lists and tables in order."""
    from odf.opendocument import load as load_odf

    check_unpacked_size(path, data)
    document = load_odf(io.BytesIO(data))
    builder = DocumentBuilder()
    _add_odt_blocks(builder, document.text, [])
    return builder.build()


def _add_odt_blocks(builder: DocumentBuilder, element: Any, stack: list[tuple[int, str]]) -> None:
    """The blocks under ``element`` in reading order; ``stack`` holds the open headings."""
    from odf import teletype
    from odf.namespaces import TABLENS, TEXTNS
    from odf.table import TableRow

    for child in element.childNodes:
        if child.nodeType != child.ELEMENT_NODE:
            continue
        if child.qname == (TEXTNS, "h"):
            title = " ".join(teletype.extractText(child).split())
            level = int(child.getAttribute("outlinelevel") or 1)
            while stack and stack[-1][0] >= level:
                stack.pop()
            if title:
                stack.append((level, title))
            builder.add(title, tuple(t for _, t in stack))
        elif child.qname == (TEXTNS, "p"):
            builder.add(teletype.extractText(child), tuple(t for _, t in stack))
        elif child.qname == (TABLENS, "table"):
            for row in child.getElementsByType(TableRow):
                cells = [teletype.extractText(cell).strip() for cell in row.childNodes]
                builder.add(" | ".join(c for c in cells if c), tuple(t for _, t in stack))
        elif child.qname in ((TEXTNS, "list"), (TEXTNS, "list-item"), (TEXTNS, "section")):
            _add_odt_blocks(builder, child, stack)
