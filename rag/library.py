"""A workspace's documents as every front door sees them: list, accept uploads, remove one.

The chat app, the API and the CLI call these, so what they accept, refuse and report cannot
drift apart. Limits: uploads are held in memory whole (up to ``ui.max_upload_mb`` each).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rag.documents.uploads import save_upload
from rag.errors import RagError
from rag.ingest.ingestion import Ingestor, IngestReport
from rag.pipeline import Pipeline


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
    return Document(found, source, pipeline.remove_document(found, source))
