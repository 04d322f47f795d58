"""E-books: EPUB 2 and 3, read with the standard library's zip and XML readers.

The package document (OPF) gives the reading order (the spine); each chapter is XHTML read
by the HTML path (:func:`rag.documents.html.load_html`: hidden text and navigation left out),
numbered as a page ("chapter 3"), under its title from the table of contents (EPUB 3's nav,
EPUB 2's NCX), else its first heading.

Limits: the archive must unpack within the zip-bomb bounds; DRM-protected books, pictures
and fixed-layout books are not read; a chapter split over several files counts as several.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote
from xml.etree import ElementTree

from rag.documents.document import (
    DocumentBuilder,
    LoadedDocument,
    LoadError,
    check_unpacked_size,
)
from rag.documents.html import load_html

_CONTAINER = "META-INF/container.xml"
_XHTML = frozenset({"application/xhtml+xml", "text/html"})


def load_epub(path: Path, data: bytes) -> LoadedDocument:
    """The chapters of an EPUB in reading order, each a page headed by its title."""
    check_unpacked_size(path, data)
    with zipfile.ZipFile(io.BytesIO(data)) as book:
        if _CONTAINER not in book.namelist():
            raise LoadError(path, "not an EPUB book (no META-INF/container.xml)")
        if any(name == "META-INF/encryption.xml" for name in book.namelist()):
            raise LoadError(path, "an encrypted (DRM-protected) e-book: its text cannot be read")
        package = _rootfile(path, _xml(path, book, _CONTAINER))
        opf = _xml(path, book, package)
        folder = posixpath.dirname(package)
        items = {
            item.get("id", ""): item
            for item in opf.iter()
            if _local(item.tag) == "item" and item.get("href")
        }
        titles = _toc_titles(path, book, folder, items.values())
        builder = DocumentBuilder()
        number = 0
        for reference in (e for e in opf.iter() if _local(e.tag) == "itemref"):
            item = items.get(reference.get("idref", ""))
            if item is None or item.get("media-type") not in _XHTML:
                continue
            if "nav" in (item.get("properties") or "").split():
                continue  # the table of contents itself
            name = _joined(folder, item.get("href", ""))
            try:
                chapter = load_html(Path(name), book.read(name))
            except KeyError:
                builder.parser_warnings.append(f"{name}: listed in the spine, not in the book")
                continue
            if not chapter.text.strip():
                continue  # a cover picture, a blank page
            number += 1
            first = next((s.headings[0] for s in chapter.sections if s.headings), "")
            title = titles.get(name) or first or f"Chapter {number}"
            builder.add_document(chapter, (title,), number, f"chapter {number}")
    return builder.build()


def _xml(path: Path, book: zipfile.ZipFile, name: str) -> ElementTree.Element:
    """A part of the book as XML (the zip's own directory bounds the read)."""
    try:
        return ElementTree.fromstring(book.read(name))
    except KeyError as error:
        raise LoadError(path, f"not a complete EPUB book ({name} is missing)") from error
    except ElementTree.ParseError as error:
        raise LoadError(path, f"cannot parse .epub file: {name}: {error}") from error


def _rootfile(path: Path, container: ElementTree.Element) -> str:
    for element in container.iter():
        if _local(element.tag) == "rootfile" and element.get("full-path"):
            return str(element.get("full-path"))
    raise LoadError(path, "not an EPUB book (its container names no package document)")


def _toc_titles(
    path: Path, book: zipfile.ZipFile, folder: str, items: Iterable[ElementTree.Element]
) -> dict[str, str]:
    """Chapter file -> title, from EPUB 3's nav document, else EPUB 2's NCX."""
    titles: dict[str, str] = {}
    for item in items:
        properties = (item.get("properties") or "").split()
        is_nav = "nav" in properties
        is_ncx = item.get("media-type") == "application/x-dtbncx+xml"
        if not (is_nav or is_ncx):
            continue
        name = _joined(folder, item.get("href", ""))
        try:
            toc = _xml(path, book, name)
        except LoadError:
            continue  # a broken table of contents: the chapters' own headings serve
        base = posixpath.dirname(name)
        if is_nav:
            for link in (e for e in toc.iter() if _local(e.tag) == "a" and e.get("href")):
                text = " ".join("".join(link.itertext()).split())
                titles.setdefault(_joined(base, link.get("href", "")), text)
        else:
            for point in (e for e in toc.iter() if _local(e.tag) == "navPoint"):
                label = next((e for e in point.iter() if _local(e.tag) == "text"), None)
                content = next((e for e in point.iter() if _local(e.tag) == "content"), None)
                if label is not None and content is not None and content.get("src"):
                    text = " ".join("".join(label.itertext()).split())
                    titles.setdefault(_joined(base, content.get("src", "")), text)
    return {name: title for name, title in titles.items() if title}


def _joined(folder: str, href: str) -> str:
    """A reference relative to ``folder`` as the zip names it (fragment dropped)."""
    return posixpath.normpath(posixpath.join(folder, unquote(href.split("#")[0])))


def _local(tag: str) -> str:
    """A tag's name without its namespace."""
    return tag.rsplit("}", 1)[-1]
