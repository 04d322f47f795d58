"""Bring the store exactly in line with folders of documents, embedding as little as possible.

A run compares each file's content hash with the per-file record kept in the chunks' metadata
(see ``rag.store``): unchanged files cost one read and one hash; new and edited files are
chunked, and only chunk texts the collection does not hold yet are embedded (an edit re-embeds
the edited passages, a rename or copy re-embeds nothing); files gone from disk lose their
chunks. Files are embedded in groups for efficient batches, and each group is written in one
step that also deletes the files' stale chunks. Chunk ids are deterministic, so a run killed
at any moment is finished by the next one, which converges to what a clean run writes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.chunking import Chunk, Chunker
from rag.embeddings import Embedder
from rag.loaders import LoadError, load
from rag.scanning import SourceFile, scan
from rag.settings import Settings
from rag.store import ChunkStore, FileRecord, Metadata, StoredChunk

# Bump when chunking changes in a way that changes chunk texts: every file is then redone.
CHUNKER_VERSION = 1


class Progress(Protocol):
    """Receives progress from a run (a progress bar, a UI)."""

    def files_total(self, count: int) -> None:
        """Files that will be looked at."""

    def file_done(self) -> None:
        """One more file looked at."""

    def chunks_total(self, count: int) -> None:
        """More chunks are to be embedded."""

    def chunks_done(self, count: int) -> None:
        """Chunks embedded."""


class NoProgress:
    """Progress that goes nowhere."""

    def files_total(self, count: int) -> None:
        """Ignore."""

    def file_done(self) -> None:
        """Ignore."""

    def chunks_total(self, count: int) -> None:
        """Ignore."""

    def chunks_done(self, count: int) -> None:
        """Ignore."""


@dataclass
class IngestReport:
    """What one run did; ``failed`` pairs a path with the reason."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_in_store: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def summary(self) -> str:
        """One line for people."""
        return (
            f"added {len(self.added)}, updated {len(self.updated)}, removed {len(self.removed)}, "
            f"renamed {len(self.renamed)}, unchanged {self.unchanged}, "
            f"skipped {len(self.skipped)}, failed {len(self.failed)}; "
            f"chunks embedded {self.chunks_embedded}, reused {self.chunks_reused}, "
            f"in store {self.chunks_in_store}; {self.seconds:.1f}s"
        )


@dataclass
class _Prepared:
    """A new or changed file, chunked and waiting to be embedded and written."""

    file: SourceFile
    file_hash: str
    chunks: list[Chunk]
    record: FileRecord | None


class Ingestor:
    """Syncs folders and files into a :class:`ChunkStore`."""

    def __init__(
        self,
        settings: Settings,
        store: ChunkStore,
        embedder: Embedder,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.progress: Progress = progress or NoProgress()
        max_tokens = min(settings.chunking.max_tokens or embedder.max_tokens, embedder.max_tokens)
        self.chunker = Chunker(embedder.token_spans, max_tokens, settings.chunking.overlap_tokens)
        self.pipeline = _digest(
            f"{embedder.name}|{max_tokens}|{settings.chunking.overlap_tokens}|{CHUNKER_VERSION}"
        )[:16]

    def reset(self) -> None:
        """Empty the collection."""
        with self.store.lock.writer():
            self.store.reset()

    def sync(self, paths: Sequence[Path]) -> IngestReport:
        """Make the store hold exactly the supported files under ``paths``."""
        started = time.perf_counter()
        report = IngestReport()
        chroma = self.settings.chroma_path
        found = scan(
            list(paths),
            int(self.settings.ingest.max_file_mb * 2**20),
            exclude=(chroma, chroma.with_name(chroma.name + ".lock")),
        )
        report.skipped = [str(path) for path in found.skipped]
        report.failed = [(str(path), reason) for path, reason in found.failed]
        self.progress.files_total(len(found.files))
        with self.store.lock.writer():
            records = {
                key: record
                for key, record in self.store.records({s.root for s in found.scopes}).items()
                if any(scope.covers(*key) for scope in found.scopes)
            }
            group: list[_Prepared] = []
            added_hashes: dict[str, str] = {}  # file hash -> source, of files new to the store
            for file in found.files:
                prepared = self._prepare(file, records.get((file.root, file.source)), report)
                self.progress.file_done()
                if prepared is not None:
                    group.append(prepared)
                if sum(len(p.chunks) for p in group) >= self.settings.ingest.group_chunks:
                    self._write(group, report, added_hashes)
                    group = []
            self._write(group, report, added_hashes)
            on_disk = {(file.root, file.source) for file in found.files}
            gone = [record for key, record in records.items() if key not in on_disk]
            self.store.write([], delete_ids=[i for record in gone for i in record.chunk_ids])
            _report_removals(gone, added_hashes, report)
        report.chunks_in_store = self.store.count()
        report.seconds = time.perf_counter() - started
        return report

    def _prepare(
        self, file: SourceFile, record: FileRecord | None, report: IngestReport
    ) -> _Prepared | None:
        """Read, hash, load and chunk one file; None when unchanged or failed."""
        try:
            data = file.path.read_bytes()
        except OSError as error:
            report.failed.append((str(file.path), f"cannot read: {error.strerror or error}"))
            return None
        file_hash = _digest(data)
        if record is not None and record.holds(file_hash, self.pipeline):
            report.unchanged += 1
            return None
        try:
            chunks = self.chunker.split(load(file.path, data))
        except LoadError as error:
            report.failed.append((str(file.path), error.reason))
            return None
        return _Prepared(file, file_hash, chunks, record)

    def _write(
        self, group: list[_Prepared], report: IngestReport, added_hashes: dict[str, str]
    ) -> None:
        """Embed what is new in ``group`` and write it, replacing the files' old chunks."""
        if not group:
            return
        hashes = [_digest(chunk.text)[:32] for p in group for chunk in p.chunks]
        vectors = self.store.embeddings_by_content(hashes)
        report.chunks_reused += sum(1 for h in hashes if h in vectors)
        texts = {h: c.text for p in group for c in p.chunks for h in [_digest(c.text)[:32]]}
        missing = [h for h in dict.fromkeys(hashes) if h not in vectors]
        vectors.update(self._embed({h: texts[h] for h in missing}))
        report.chunks_embedded += len(missing)

        stored: list[StoredChunk] = []
        stale: set[str] = set()
        position = 0
        for prepared in group:
            for index, chunk in enumerate(prepared.chunks):
                content_hash = hashes[position]
                position += 1
                metadata = self._metadata(prepared, index, chunk, content_hash)
                chunk_id = _digest(
                    f"{prepared.file.root}\x1f{prepared.file.source}\x1f{index}\x1f{content_hash}"
                )[:32]
                stored.append(StoredChunk(chunk_id, chunk.text, metadata, vectors[content_hash]))
            if prepared.record is None:
                report.added.append(prepared.file.source)
                added_hashes.setdefault(prepared.file_hash, prepared.file.source)
            else:
                report.updated.append(prepared.file.source)
                stale |= prepared.record.chunk_ids
        self.store.write(stored, delete_ids=stale)

    def _embed(self, texts: dict[str, str]) -> dict[str, np.ndarray]:
        """Embed in slices of similar length (little padding), reporting progress."""
        if not texts:
            return {}
        self.progress.chunks_total(len(texts))
        order = sorted(texts, key=lambda h: len(texts[h]), reverse=True)
        step = self.settings.embedding.batch_size * 4
        vectors: dict[str, np.ndarray] = {}
        for start in range(0, len(order), step):
            batch = order[start : start + step]
            for content_hash, vector in zip(
                batch, self.embedder.embed([texts[h] for h in batch]), strict=True
            ):
                vectors[content_hash] = vector
            self.progress.chunks_done(len(batch))
        return vectors

    def _metadata(
        self, prepared: _Prepared, index: int, chunk: Chunk, content_hash: str
    ) -> Metadata:
        metadata: Metadata = {
            "root": prepared.file.root,
            "source": prepared.file.source,
            "file_type": prepared.file.path.suffix.lower().lstrip("."),
            "file_hash": prepared.file_hash,
            "pipeline": self.pipeline,
            "chunk_index": index,
            "chunk_count": len(prepared.chunks),
            "start_char": chunk.start,
            "end_char": chunk.end,
            "tokens": chunk.tokens,
            "content_hash": content_hash,
            "headings": " > ".join(chunk.headings),
        }
        if chunk.page is not None:
            metadata["page"] = chunk.page
        return metadata


def _report_removals(
    gone: list[FileRecord], added_hashes: dict[str, str], report: IngestReport
) -> None:
    """Count a removed file whose content was added under another name as a rename."""
    for record in gone:
        new_source = added_hashes.pop(record.file_hash or "", None)
        if new_source is None:
            report.removed.append(record.source)
        else:
            report.renamed.append((record.source, new_source))
            report.added.remove(new_source)


def _digest(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()
