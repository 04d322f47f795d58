"""Bring the store exactly in line with folders of documents, embedding as little as possible.

A sync is a few steps: plan (which files the paths hold), prepare (each file read and hashed;
a new or changed one loaded and chunked: :mod:`rag.ingest.prepare`), embed (only chunk texts
the collection does not hold yet: an edit re-embeds the edited passages, a rename or copy
nothing; where the model runs is :mod:`rag.ingest.embed`'s choice), write (each group's chunks
in and the files' stale chunks out, in one write: :mod:`rag.ingest.write`), and remove what is
gone from disk. Unchanged files cost one read and one hash, against the per-file record in the
chunks' metadata (:mod:`rag.storage.records`). Chunk ids are deterministic, so a run killed at
any moment is finished by the next one, which converges to what a clean run writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rag.documents.chunking import Chunk, Chunker, is_navigation
from rag.documents.loaders import file_type
from rag.documents.scanning import ScanResult, SourceFile, scan
from rag.models.embeddings import Embedder
from rag.settings import Settings
from rag.storage.records import FileRecord, Metadata, Records, StoredChunk
from rag.storage.store import ChunkStore

if TYPE_CHECKING:
    from numpy.typing import NDArray

from rag.ingest.embed import EmbeddingRunner
from rag.ingest.hashing import digest
from rag.ingest.prepare import (
    ChunkingRecipe,
    FileOutcome,
    held_version,
    load_and_chunk,
    prepare_files,
)
from rag.ingest.web import Visit, load_page, page_file, visit
from rag.ingest.write import GroupWrite, GroupWriter
from rag.web.fetching import Fetched, WebFetcher, checked_url

log = logging.getLogger(__name__)


# Bump when loading or chunking changes chunk texts: every file is then redone, its unchanged
# chunks' vectors reused (3: hidden text left out; 4: PDF text NFKC, hyphenated words joined;
# 5: two-column PDF pages read column by column; 6: HTML navigation left out, index and
# contents chunks marked; 7: a CSV chunk's rows named in its location).
CHUNKER_VERSION = 7


PAGES_PER_GROUP = 64  # web pages embedded and written together


class Progress:
    """Receives progress from a run; subclasses show it (a progress bar, a UI). Does nothing."""

    def files_total(self, count: int) -> None:
        """Files that will be looked at."""
        return

    def file_done(self) -> None:
        """One more file looked at."""
        return

    def chunks_total(self, count: int) -> None:
        """More chunks are to be embedded."""
        return

    def chunks_done(self, count: int) -> None:
        """Chunks embedded."""
        return


@dataclass
class IngestReport:
    """What one run did; ``failed`` pairs a path with the reason."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # path, reason
    failed: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # ingested, with a remark
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_in_store: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def include(self, other: IngestReport) -> None:
        """Add another run's outcome to this one's (a folder's and a site's, in one report)."""
        for name in ("added", "updated", "removed", "renamed", "skipped", "failed", "notes"):
            getattr(self, name).extend(getattr(other, name))
        self.unchanged += other.unchanged
        self.chunks_embedded += other.chunks_embedded
        self.chunks_reused += other.chunks_reused
        self.chunks_in_store = other.chunks_in_store
        self.seconds += other.seconds

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
class PreparedFile:
    """A new or changed file, chunked and waiting to be embedded and written."""

    file: SourceFile
    file_hash: str
    chunks: list[Chunk]
    words: list[list[str]]  # each chunk's keywords, for the keyword index
    record: FileRecord | None
    extra: Metadata = field(default_factory=dict)  # more for each chunk's metadata (a page's)


def make_chunker(settings: Settings, embedder: Embedder) -> Chunker:
    """The chunker for these settings: never longer than what the embedder reads."""
    limit = embedder.max_tokens
    max_tokens = min(settings.chunking.max_tokens or limit, limit)
    return Chunker(embedder.token_spans, max_tokens, settings.chunking.overlap_tokens)


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
        self.progress = progress or Progress()
        self.chunker = make_chunker(settings, embedder)
        self._recipe = ChunkingRecipe(
            embedder.settings,
            self.chunker.max_tokens,
            self.chunker.overlap_tokens,
            settings.ingest.ocr,
        )
        self.pipeline = digest(
            f"{embedder.name}|{self.chunker.max_tokens}|{self.chunker.overlap_tokens}"
            f"|{CHUNKER_VERSION}|ocr={settings.ingest.ocr}"
        )[:16]

    def reset(self) -> None:
        """Empty the collection."""
        with self.store.writer():
            self.store.reset()

    def remove(self, root: str, source: str) -> int:
        """Take one stored document out of the store (its file stays); returns chunks removed."""
        with self.store.writer():
            record = self.store.records([root]).get((root, source))
            if record is None:
                return 0
            self.store.write(delete_ids=record.chunk_ids)
            return len(record.chunk_ids)

    def sync(self, paths: Sequence[Path]) -> IngestReport:
        """Make the store hold exactly the supported files under ``paths``."""
        started = time.perf_counter()
        report = IngestReport()
        found = self._plan(paths, report)
        with self.store.writer():
            records = self.store.records({s.root for s in found.scopes})
            added = self._ingest_files(found.files, records, report)
            self._remove_gone(found, records, added, report)
        report.chunks_in_store = self.store.count()
        report.seconds = time.perf_counter() - started
        return report

    def sync_web(self, urls: Sequence[str]) -> IngestReport:
        """Make the store hold the pages at ``urls`` (a sitemap's: those it lists) as they are.

        Pages are fetched before the store is locked for writing (:mod:`rag.ingest.web`).
        """
        started = time.perf_counter()
        report = IngestReport()
        roots = list(dict.fromkeys(checked_url(url) for url in urls))
        held = self.store.records(roots)

        def validators(root: str, url: str) -> tuple[str | None, str | None]:
            record = held.get((root, url))
            if record is None or held_version(record, self.pipeline) is None:
                return None, None  # not stored whole by this pipeline: fetched in full
            rows = self.store.rows(sorted(record.chunk_ids)[:1])  # each chunk records them
            metadata = next(iter(rows.values()))[1] if rows else {}
            etag, date = metadata.get("http_etag"), metadata.get("http_last_modified")
            return (str(etag) if etag else None), (str(date) if date else None)

        with WebFetcher(self.settings.web) as fetcher:
            visits = [
                visit(fetcher, root, validators, self.settings.web.max_pages) for root in roots
            ]
        self.progress.files_total(sum(len(v.pages) for v in visits))
        with self.store.writer():
            records = self.store.records(roots)
            prepared = [
                taken
                for v in visits
                for page in v.pages
                if (taken := self._page_to_embed(v.root, page, records, report)) is not None
            ]
            with (
                EmbeddingRunner(self.embedder, self.settings.ingest.embedding_process) as embedding,
                GroupWriter(self.store, embedding) as writer,
            ):
                for start in range(0, len(prepared), PAGES_PER_GROUP):
                    group = prepared[start : start + PAGES_PER_GROUP]
                    writer.submit(self._embed_group(group, embedding, report))
            self._remove_pages_gone(visits, records, report)
        report.chunks_in_store = self.store.count()
        report.seconds = time.perf_counter() - started
        return report

    def _page_to_embed(
        self, root: str, page: Fetched, records: Records, report: IngestReport
    ) -> PreparedFile | None:
        """A fetched page's outcome in the report; the page to embed when it is new or changed."""
        self.progress.file_done()
        record = records.get((root, page.url))
        if page.status == "failed":
            report.failed.append((page.url, page.reason))
            return None
        if page.status != "fetched":  # unchanged, or gone (removed afterwards)
            report.unchanged += page.status == "unchanged"
            return None
        held = held_version(record, self.pipeline)
        read = FileOutcome(digest(page.data))
        if held is not None and held[0] == read.file_hash:
            report.unchanged += 1
            return None
        path = page_file(page)
        outcome = load_and_chunk(path, page.data, read, self._recipe, self.chunker, load_page)
        file = SourceFile(root, page.url, path)
        report.notes += [(page.url, note) for note in outcome.notes]
        if outcome.failure is not None or outcome.chunks is None:
            report.failed.append((page.url, outcome.failure or "no text"))
            return None
        extra: Metadata = {}
        if page.etag:
            extra["http_etag"] = page.etag
        if page.last_modified:
            extra["http_last_modified"] = page.last_modified
        return PreparedFile(file, outcome.file_hash, outcome.chunks, outcome.words, record, extra)

    def _remove_pages_gone(
        self, visits: Sequence[Visit], records: Records, report: IngestReport
    ) -> None:
        """Pages that answered 404 or 410, and a sitemap's pages it no longer lists."""
        gone: list[FileRecord] = []
        for v in visits:
            answered_gone = {page.url for page in v.pages if page.status == "gone"}
            for root, source in records:
                unlisted = v.listed is not None and source not in v.listed
                if root == v.root and (source in answered_gone or unlisted):
                    gone.append(records[(root, source)])
        self.store.write(delete_ids=[i for record in gone for i in record.chunk_ids])
        report.removed += [record.source for record in gone]

    def _plan(self, paths: Sequence[Path], report: IngestReport) -> ScanResult:
        """Step 1: the files under ``paths``; those skipped or failing are reported."""
        found = scan(
            list(paths),
            int(self.settings.ingest.max_file_mb * 2**20),
            exclude=(self.settings.chroma_path, self.settings.lock_dir),
        )
        report.skipped = [(str(path), reason) for path, reason in found.skipped]
        report.failed = [(str(path), reason) for path, reason in found.failed]
        self.progress.files_total(len(found.files))
        return found

    def _ingest_files(
        self, files: Sequence[SourceFile], records: Records, report: IngestReport
    ) -> dict[str, str]:
        """Steps 2 to 4: prepare each new or changed file, embed each group, write it.

        Returns the content hash and source of every file new to the store (a rename's).
        """
        added: dict[str, str] = {}
        with (
            EmbeddingRunner(self.embedder, self.settings.ingest.embedding_process) as embedding,
            GroupWriter(self.store, embedding) as writer,
        ):
            prepared = prepare_files(
                files,
                records,
                self.pipeline,
                self._recipe,
                self.chunker,
                self.settings.ingest.prepare_workers,
            )
            for group in self._groups(prepared, report, added):
                writer.submit(self._embed_group(group, embedding, report))
        return added

    def _groups(
        self,
        prepared: Iterable[tuple[SourceFile, FileRecord | None, FileOutcome]],
        report: IngestReport,
        added: dict[str, str],
    ) -> Iterator[list[PreparedFile]]:
        """The files to embed, in groups of about ``ingest.group_chunks`` chunks."""
        group: list[PreparedFile] = []
        group_chunks = 0
        for file, record, outcome in prepared:
            taken = self._file_to_embed(file, record, outcome, report)
            self.progress.file_done()
            if taken is not None:
                group.append(taken)
                group_chunks += len(taken.chunks)
                if taken.record is None:
                    added.setdefault(taken.file_hash, file.source)
            if group_chunks >= self.settings.ingest.group_chunks:
                yield group
                group, group_chunks = [], 0
        if group:
            yield group

    def _remove_gone(
        self, found: ScanResult, records: Records, added: dict[str, str], report: IngestReport
    ) -> None:
        """Step 5: files gone from disk lose their chunks (a rename is counted as one).

        A file under a folder that could not be listed stays.
        """
        on_disk = {(file.root, file.source) for file in found.files}
        gone = [
            records[key]
            for key in records
            if key not in on_disk
            and not found.unseen(*key)
            and any(scope.covers(*key) for scope in found.scopes)
        ]
        self.store.write(delete_ids=[i for record in gone for i in record.chunk_ids])
        _report_removals(gone, added, report)

    def _file_to_embed(
        self,
        file: SourceFile,
        record: FileRecord | None,
        outcome: FileOutcome,
        report: IngestReport,
    ) -> PreparedFile | None:
        """A file's outcome in the report; the file to embed when it is new or changed."""
        report.notes += [(str(file.path), note) for note in outcome.notes]
        if outcome.failure is not None:
            report.failed.append((str(file.path), outcome.failure))
            return None
        if outcome.chunks is None:
            report.unchanged += 1
            return None
        return PreparedFile(file, outcome.file_hash, outcome.chunks, outcome.words, record)

    def _embed_group(
        self, group: list[PreparedFile], embedding: EmbeddingRunner, report: IngestReport
    ) -> GroupWrite:
        """Chunks of ``group`` with their embeddings, reused where the store has the text."""
        keyed = [[(digest(chunk.text)[:32], chunk) for chunk in p.chunks] for p in group]
        unique = {content_hash: chunk for pairs in keyed for content_hash, chunk in pairs}
        vectors = self.store.embeddings_by_content(list(unique))
        report.chunks_reused += sum(h in vectors for pairs in keyed for h, _ in pairs)
        missing = {h: chunk for h, chunk in unique.items() if h not in vectors}
        vectors.update(self._embed(missing, embedding))
        report.chunks_embedded += len(missing)

        write = GroupWrite()
        for prepared, pairs in zip(group, keyed, strict=True):
            file = prepared.file
            stored = [
                StoredChunk(
                    digest(f"{file.root}\x1f{file.source}\x1f{index}\x1f{content_hash}")[:32],
                    chunk.text,
                    self._metadata(prepared, index, chunk, content_hash),
                    vectors[content_hash],
                    words,
                )
                for index, ((content_hash, chunk), words) in enumerate(
                    zip(pairs, prepared.words, strict=True)
                )
            ]
            if prepared.record is None:
                write.new_chunks += stored
                report.added.append(file.source)
            else:
                write.chunks += stored
                write.stale |= prepared.record.chunk_ids
                report.updated.append(file.source)
        return write

    def _embed(
        self, chunks: dict[str, Chunk], embedding: EmbeddingRunner
    ) -> dict[str, NDArray[np.float32]]:
        """Embed ``chunks`` (content hash -> chunk), reporting progress."""
        if not chunks:
            return {}
        self.progress.chunks_total(len(chunks))
        vectors = embedding.embed(
            [chunk.text for chunk in chunks.values()],
            self.progress.chunks_done,
            [chunk.tokens for chunk in chunks.values()],
        )
        return dict(zip(chunks, vectors, strict=True))

    def _metadata(
        self, prepared: PreparedFile, index: int, chunk: Chunk, content_hash: str
    ) -> Metadata:
        metadata: Metadata = {
            "root": prepared.file.root,
            "source": prepared.file.source,
            "file_type": file_type(prepared.file.path),
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
        if chunk.location is not None:
            metadata["location"] = chunk.location
        if is_navigation(chunk.text):
            metadata["navigation"] = True  # an index, a contents page: ranked below content
        metadata.update(prepared.extra)
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
