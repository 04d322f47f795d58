"""A workspace's documents as every front door sees them: list, accept uploads, remove, read.

The chat app, the API, the CLI and the MCP server call these, so what they accept, refuse and
report cannot drift apart. Limits: uploads are held in memory whole (up to
``ui.max_upload_mb`` each); a document is read back as its stored chunks, not its file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rag.documents.uploads import save_upload
from rag.errors import RagError
from rag.ingest.ingestion import Ingestor, IngestReport
from rag.pipeline import Pipeline
from rag.storage.records import Metadata


class NoDocumentError(RagError):
    """No stored document has that name."""

    http_status = 404


class AmbiguousDocumentError(RagError):
    """Documents of that name were ingested from several folders."""

    http_status = 409


@dataclass(frozen=True)
class Document:
    """A stored document: the folder it was ingested from, its path there, its chunk count."""

    root: str
    source: str
    chunks: int

    @property
    def size(self) -> str:
        """'1 chunk', '4 chunks': as the lists show it."""
        return counted(self.chunks, "chunk")


def counted(number: int, noun: str) -> str:
    """'1 chunk', '2 chunks': a count with its noun, for people (English plurals in -s only)."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


@dataclass
class UploadOutcome:
    """What an upload did: the sync's report, the files refused before it, those replaced."""

    report: IngestReport = field(default_factory=IngestReport)
    refused: list[tuple[str, str]] = field(default_factory=list)  # name given, reason
    replaced: list[str] = field(default_factory=list)  # file names

    @property
    def failed(self) -> list[tuple[str, str]]:
        """Every file that did not get in, with the reason: refused or failed to ingest."""
        return self.refused + self.report.failed


def list_documents(pipeline: Pipeline) -> list[Document]:
    """Every stored document, by name."""
    files = pipeline.store.files()
    return [
        Document(root, source, chunks)
        for (root, source), chunks in sorted(files.items(), key=lambda item: item[0][::-1])
    ]


def accept_uploads(
    pipeline: Pipeline,
    files: Iterable[tuple[str, bytes]],
    ingestor: Ingestor | None = None,
) -> UploadOutcome:
    """Save uploaded (name, bytes) under the workspace's uploads folder and sync them in.

    A file over ``ui.max_upload_mb`` or with an unusable name is refused, the rest are
    ingested; ``ingestor`` is one that reports progress (the app's), else the pipeline's.
    """
    limit_mb = pipeline.settings.ui.max_upload_mb
    outcome = UploadOutcome()
    saved: list[Path] = []
    for name, data in files:
        if len(data) > limit_mb * 2**20:
            outcome.refused.append((name, f"larger than {limit_mb} MB"))
            continue
        try:
            kept = save_upload(pipeline.settings.uploads_dir, name, data, taken=saved)
        except (ValueError, OSError) as error:
            outcome.refused.append((name, str(error)))
            continue
        saved.append(kept.path)
        if kept.replaced:
            outcome.replaced.append(kept.path.name)
    if saved:
        outcome.report = (ingestor or pipeline.ingestor).sync(saved)
    return outcome


def remove_document(pipeline: Pipeline, source: str, root: str | None = None) -> Document:
    """Take a document out of the store (an uploaded file is deleted too).

    Raises:
        NoDocumentError: no document of that name (under ``root``, when given).
        AmbiguousDocumentError: documents of that name came from several folders.
    """
    found = _folder_of(pipeline, source, root)
    return Document(found, source, pipeline.remove_document(found, source))


@dataclass(frozen=True)
class DocumentText:
    """A span of a stored document's text: all of it, or of one page, from ``offset`` on."""

    source: str
    root: str
    page: int | None  # the page read, or None for the whole document
    pages: list[int]  # every page the document has (none for a file without pages)
    text: str
    offset: int  # where ``text`` starts in the text read
    total_chars: int  # the length of the text read (the page's, or the document's)

    @property
    def next_offset(self) -> int | None:
        """Where the next span starts, or None when this one reaches the end."""
        end = self.offset + len(self.text)
        return end if end < self.total_chars else None


READ_LIMIT = 20_000  # characters one read returns at most: a client asks again from next_offset


def read_document(
    pipeline: Pipeline,
    source: str,
    page: int | None = None,
    offset: int = 0,
    max_chars: int = 8_000,
    root: str | None = None,
) -> DocumentText:
    """The stored text of a document (or of one of its pages), ``max_chars`` from ``offset``.

    The text is the document's chunks put back together, overlaps removed: what was
    ingested, not the file as it is now. Limits: at most ``READ_LIMIT`` characters a read.

    Raises:
        NoDocumentError: no document of that name, or it has no such page.
        AmbiguousDocumentError: documents of that name came from several folders.
    """
    found = _folder_of(pipeline, source, root)
    chunks = pipeline.store.file_chunks(found, source)
    pages = sorted({int(metadata["page"]) for _, metadata in chunks if "page" in metadata})
    if page is not None:
        if page not in pages:
            held = f"its pages are {pages[0]} to {pages[-1]}" if pages else "it has no pages"
            msg = f"{source!r} has no page {page}: {held}"
            raise NoDocumentError(msg)
        chunks = [(text, metadata) for text, metadata in chunks if metadata.get("page") == page]
    text = _put_together(chunks)
    if not 0 <= offset <= len(text):
        msg = f"offset {offset} is outside {source!r}, which has {len(text)} characters"
        raise InvalidReadError(msg)
    span = text[offset : offset + max(1, min(max_chars, READ_LIMIT))]
    return DocumentText(source, found, page, pages, span, offset, len(text))


class InvalidReadError(RagError):
    """A read that asks for a span the document does not have."""

    http_status = 400


def _put_together(chunks: Iterable[tuple[str, Metadata]]) -> str:
    """Chunks in reading order as one text: the part a chunk shares with the last is left out."""
    parts: list[str] = []
    reached = 0
    for text, metadata in chunks:
        start = int(metadata.get("start_char", reached))
        end = int(metadata.get("end_char", start + len(text)))
        if parts and start < reached:
            text = text[reached - start :]
        elif parts:
            parts.append("\n\n")  # what lay between them was blank
        parts.append(text)
        reached = max(reached, end)
    return "".join(parts)


def _folder_of(pipeline: Pipeline, source: str, root: str | None) -> str:
    """The folder a stored document was ingested from.

    Raises:
        NoDocumentError: no document of that name (under ``root``, when given).
        AmbiguousDocumentError: documents of that name came from several folders.
    """
    roots = {r for (r, s) in pipeline.store.files() if s == source}
    if root is not None:
        roots &= {root}
    if not roots:
        msg = f"no document {source!r} in workspace {pipeline.settings.workspace!r}"
        raise NoDocumentError(msg)
    if len(roots) > 1:
        msg = f"{source!r} is in several folders: name one"
        raise AmbiguousDocumentError(msg)
    (found,) = roots
    return found
