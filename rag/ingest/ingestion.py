"""Bring the store exactly in line with folders of documents, embedding as little as possible.

A run compares each file's content hash with the per-file record kept in the chunks' metadata
(see ``rag.storage.store``): unchanged files cost one read and one hash; new and edited files are
chunked, and only chunk texts the collection does not hold yet are embedded (an edit re-embeds
the edited passages, a rename or copy re-embeds nothing); files gone from disk lose their
chunks. Files are embedded in groups for efficient batches, and each group is written in one
step that also deletes the files' stale chunks. Chunk ids are deterministic, so a run killed
at any moment is finished by the next one, which converges to what a clean run writes.

With ``ingest.prepare_workers``, worker processes load and chunk new and changed files ahead of the
embedding and the writes (a GPU machine's spare cores); Chroma's ``add`` holds Python's lock while
it writes, so threads could not. For the same reason a large sync on a GPU runs the model in a
process of its own (``ingest.embedding_process``, ``rag.models.embedding_process``). Limits: the
workers import the program's main module (``spawn``), so a script that ingests through them needs an
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rag.documents.chunking import Chunk, Chunker, is_navigation
from rag.documents.document import LoadError
from rag.documents.loaders import file_type, load
from rag.documents.scanning import SourceFile, scan
from rag.models.embedding_process import EmbeddingProcess, EmbeddingProcessError
from rag.models.embeddings import Embedder
from rag.settings import EmbeddingSettings, Settings
from rag.storage.keywords import keywords
from rag.storage.records import FileRecord, Metadata, StoredChunk
from rag.storage.store import ChunkStore

if TYPE_CHECKING:
    from numpy.typing import NDArray

log = logging.getLogger(__name__)

# Bump when loading or chunking changes chunk texts: every file is then redone, its unchanged
# chunks' vectors reused (3: hidden text left out; 4: PDF text NFKC, hyphenated words joined;
# 5: two-column PDF pages read column by column; 6: HTML navigation left out, index and
# contents chunks marked).
CHUNKER_VERSION = 6


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
    words: list[list[str]]  # each chunk's keywords, for the keyword index
    record: FileRecord | None


def make_chunker(settings: Settings, embedder: Embedder) -> Chunker:
    """The chunker for these settings: never longer than what the embedder reads."""
    limit = embedder.max_tokens
    max_tokens = min(settings.chunking.max_tokens or limit, limit)
    return Chunker(embedder.token_spans, max_tokens, settings.chunking.overlap_tokens)


@dataclass
class _GroupWrite:
    """One group's write: chunks of files new to the store, of changed files, stale ids."""

    new_chunks: list[StoredChunk] = field(default_factory=list)
    chunks: list[StoredChunk] = field(default_factory=list)
    stale: set[str] = field(default_factory=set)


class _Embedding:
    """A sync's embedding: here, or in a process of its own once that process has loaded.

    ``ingest.embedding_process``: 'own' starts the process with the sync's first chunks;
    'auto' starts it on a GPU once a sync has embedded ``_OWN_PROCESS_AFTER`` chunks here (a
    watched folder's small sync never pays for it). Chunks are embedded here until it is ready.
    """

    def __init__(self, embedder: Embedder, where: str) -> None:
        self.embedder = embedder
        self.where = where
        self.embedded_here = 0
        self.own: EmbeddingProcess | None = None

    @property
    def on_gpu(self) -> bool:
        """True when the model runs on a GPU."""
        return self.embedder.on_gpu

    def embed(
        self, texts: list[str], on_batch: Callable[[int], None], token_counts: list[int]
    ) -> NDArray[np.float32]:
        """Unit-length embeddings of ``texts`` (see :meth:`Embedder.embed`)."""
        if self.own is None and self._wants_own_process():
            self.own = EmbeddingProcess(self.embedder.settings)
        if self.own is not None and self._own_ready(self.own):
            counted = 0

            def counting(count: int) -> None:
                nonlocal counted
                counted += count
                on_batch(count)

            try:
                return self.own.embed(texts, counting, token_counts)
            except EmbeddingProcessError as error:  # killed (the kernel's OOM killer, a user)
                self._give_up(self.own, error)
                on_batch = _counting_after(counted, on_batch)  # its batches are counted once
        self.embedded_here += len(texts)
        return self.embedder.embed(texts, on_batch=on_batch, token_counts=token_counts)

    def _own_ready(self, own: EmbeddingProcess) -> bool:
        """Whether the process has loaded.

        One that could not (a second copy of the model may not fit on the device) is given up
        for the rest of the sync, which goes on here.
        """
        try:
            return own.ready()
        except EmbeddingProcessError as error:
            self._give_up(own, error)
            return False

    def _give_up(self, own: EmbeddingProcess, error: EmbeddingProcessError) -> None:
        """Embed the rest of the sync here, and say why."""
        log.warning("%s: embedding in the ingesting process instead", error)
        own.close()
        self.where = "this"
        self.own = None

    def _wants_own_process(self) -> bool:
        if self.where == "own":
            return True
        return (
            self.where == "auto"
            and self.embedded_here >= _OWN_PROCESS_AFTER
            and self.embedder.on_gpu
        )

    def __enter__(self) -> _Embedding:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.own is not None:
            self.own.close()


def _counting_after(done: int, on_batch: Callable[[int], None]) -> Callable[[int], None]:
    """``on_batch`` for embedding texts again whose first ``done`` were counted already."""
    owed = done

    def counting(count: int) -> None:
        nonlocal owed
        skipped = min(owed, count)
        owed -= skipped
        if count > skipped:
            on_batch(count - skipped)

    return counting


class _GroupWriter:
    """Writes groups in order; in the background while a GPU embeds the next group.

    On a CPU the writes stay in line: the model already keeps every core busy, and a write
    thread beside it slows the embedding more than it saves. At most one write is pending;
    an error in a background write comes out of the next submit or the exit.
    """

    def __init__(self, store: ChunkStore, embedding: _Embedding) -> None:
        self.store = store
        self.embedding = embedding
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self.pending: Future[None] | None = None

    def submit(self, write: _GroupWrite) -> None:
        self._wait()
        if self.embedding.on_gpu:
            self.pending = self.pool.submit(
                self.store.write, write.chunks, write.stale, write.new_chunks
            )
        else:
            self.store.write(write.chunks, write.stale, write.new_chunks)

    def _wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def __enter__(self) -> _GroupWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._wait()
        finally:
            self.pool.shutdown(wait=True)


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
        self._reading = _Reading(
            embedder.settings,
            self.chunker.max_tokens,
            self.chunker.overlap_tokens,
            settings.ingest.ocr,
        )
        self.pipeline = _digest(
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
        found = scan(
            list(paths),
            int(self.settings.ingest.max_file_mb * 2**20),
            exclude=(self.settings.chroma_path, self.settings.lock_dir),
        )
        report.skipped = [(str(path), reason) for path, reason in found.skipped]
        report.failed = [(str(path), reason) for path, reason in found.failed]
        self.progress.files_total(len(found.files))
        with self.store.writer():
            records = self.store.records({s.root for s in found.scopes})
            group: list[_Prepared] = []
            group_chunks = 0
            added_hashes: dict[str, str] = {}  # file hash -> source, of files new to the store
            with (
                _Embedding(self.embedder, self.settings.ingest.embedding_process) as embedding,
                _GroupWriter(self.store, embedding) as writer,
            ):
                for file, record, outcome in self._prepared(found.files, records):
                    prepared = self._taken(file, record, outcome, report)
                    self.progress.file_done()
                    if prepared is not None:
                        group.append(prepared)
                        group_chunks += len(prepared.chunks)
                        if prepared.record is None:
                            added_hashes.setdefault(prepared.file_hash, file.source)
                    if group_chunks >= self.settings.ingest.group_chunks:
                        writer.submit(self._embed_group(group, embedding, report))
                        group, group_chunks = [], 0
                if group:
                    writer.submit(self._embed_group(group, embedding, report))
            on_disk = {(file.root, file.source) for file in found.files}
            gone = [
                records[key]
                for key in records
                if key not in on_disk
                and not found.unseen(*key)
                and any(scope.covers(*key) for scope in found.scopes)
            ]
            self.store.write(delete_ids=[i for record in gone for i in record.chunk_ids])
            _report_removals(gone, added_hashes, report)
        report.chunks_in_store = self.store.count()
        report.seconds = time.perf_counter() - started
        return report

    def _prepared(
        self, files: Sequence[SourceFile], records: Mapping[tuple[str, str], FileRecord]
    ) -> Iterator[tuple[SourceFile, FileRecord | None, _Outcome]]:
        """Each file read and hashed, then loaded and chunked when new or changed, in order.

        Past the first ``_POOL_MIN_FILES`` changed files (what a watched folder's sync sees),
        worker processes (``ingest.prepare_workers``) load and chunk them, running ahead of
        the embedding and the writes (``_AHEAD_FILES`` files each, ``_AHEAD_BYTES`` in all):
        Chroma's ``add`` holds Python's lock while it writes, so a thread could not read
        meanwhile.
        """
        workers = self.settings.ingest.prepare_workers
        pool: ProcessPoolExecutor | None = None
        changed = in_flight = 0  # files loaded so far; bytes the workers hold
        ahead: deque[tuple[SourceFile, FileRecord | None, Future[_Outcome], int]] = deque()
        try:
            for file in files:
                record = records.get((file.root, file.source))
                outcome, data = _read(file, _held(record, self.pipeline))
                if data is None:
                    ahead.append((file, record, _done(outcome), 0))
                elif workers and changed >= _POOL_MIN_FILES:
                    if pool is None:
                        spawn = multiprocessing.get_context("spawn")  # never fork Chroma's threads
                        pool = ProcessPoolExecutor(workers, mp_context=spawn)
                    submitted = pool.submit(_load, file.path, data, outcome, self._reading)
                    ahead.append((file, record, submitted, len(data)))
                    in_flight += len(data)
                else:
                    loaded = _load(file.path, data, outcome, self._reading, self.chunker)
                    ahead.append((file, record, _done(loaded), 0))
                changed += data is not None
                # Enough ahead to keep the workers busy while a group is embedded and written.
                while ahead and (
                    ahead[0][2].done()
                    or len(ahead) > _AHEAD_FILES * workers
                    or in_flight > _AHEAD_BYTES
                ):
                    file, record, next_outcome, size = ahead.popleft()
                    in_flight -= size
                    yield file, record, next_outcome.result()
            while ahead:
                file, record, next_outcome, _ = ahead.popleft()
                yield file, record, next_outcome.result()
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _taken(
        self,
        file: SourceFile,
        record: FileRecord | None,
        outcome: _Outcome,
        report: IngestReport,
    ) -> _Prepared | None:
        """A file's outcome in the report; the file to embed when it is new or changed."""
        report.notes += [(str(file.path), note) for note in outcome.notes]
        if outcome.failure is not None:
            report.failed.append((str(file.path), outcome.failure))
            return None
        if outcome.chunks is None:
            report.unchanged += 1
            return None
        return _Prepared(file, outcome.file_hash, outcome.chunks, outcome.words, record)

    def _embed_group(
        self, group: list[_Prepared], embedding: _Embedding, report: IngestReport
    ) -> _GroupWrite:
        """Chunks of ``group`` with their embeddings, reused where the store has the text."""
        keyed = [[(_digest(chunk.text)[:32], chunk) for chunk in p.chunks] for p in group]
        unique = {content_hash: chunk for pairs in keyed for content_hash, chunk in pairs}
        vectors = self.store.embeddings_by_content(list(unique))
        report.chunks_reused += sum(h in vectors for pairs in keyed for h, _ in pairs)
        missing = {h: chunk for h, chunk in unique.items() if h not in vectors}
        vectors.update(self._embed(missing, embedding))
        report.chunks_embedded += len(missing)

        write = _GroupWrite()
        for prepared, pairs in zip(group, keyed, strict=True):
            file = prepared.file
            stored = [
                StoredChunk(
                    _digest(f"{file.root}\x1f{file.source}\x1f{index}\x1f{content_hash}")[:32],
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
        self, chunks: dict[str, Chunk], embedding: _Embedding
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
        self, prepared: _Prepared, index: int, chunk: Chunk, content_hash: str
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
        if is_navigation(chunk.text):
            metadata["navigation"] = True  # an index, a contents page: ranked below content
        return metadata


# Chunks a sync embeds on a GPU here before it starts the model's own process: a watched
# folder's syncs stay below it, and a larger sync loads the process (seconds) beside embedding.
_OWN_PROCESS_AFTER = 4096
_POOL_MIN_FILES = 16  # changed files loaded in line first: starting the workers takes seconds
_AHEAD_FILES = 256  # files each worker may be given before the embedding takes them: groups' worth
_AHEAD_BYTES = 64 * 2**20  # file bytes the workers may hold at once


@dataclass(frozen=True)
class _Reading:
    """What reading and chunking a file needs, sent to each worker process."""

    embedding: EmbeddingSettings  # the tokenizer that measures chunks
    max_tokens: int
    overlap_tokens: int
    ocr: bool

    def chunker(self) -> Chunker:
        spans = Embedder(self.embedding).token_spans
        return Chunker(spans, self.max_tokens, self.overlap_tokens)


@dataclass
class _Outcome:
    """One file read: its chunks (None when unchanged or failed), or why it failed."""

    file_hash: str = ""
    chunks: list[Chunk] | None = None
    words: list[list[str]] = field(default_factory=list)  # each chunk's keywords
    failure: str | None = None
    notes: list[str] = field(default_factory=list)


def _held(record: FileRecord | None, pipeline: str) -> tuple[str, str] | None:
    """The (file hash, pipeline) a record holds completely, if any."""
    if record is None or not record.complete:
        return None
    version = next(iter(record.versions))
    return version if version[1] == pipeline else None


_chunker: tuple[_Reading, Chunker] | None = None  # this process's last, kept for the next file


def _read(file: SourceFile, held: tuple[str, str] | None) -> tuple[_Outcome, bytes | None]:
    """Read and hash one file: its bytes when it must be loaded (new or changed), else None."""
    try:
        data = file.path.read_bytes()
    except OSError as error:
        return _Outcome(failure=f"cannot read: {error.strerror or error}"), None
    file_hash = _digest(data)
    if held is not None and held[0] == file_hash:
        return _Outcome(file_hash), None  # unchanged
    return _Outcome(file_hash), data


def _load(
    path: Path, data: bytes, read: _Outcome, reading: _Reading, chunker: Chunker | None = None
) -> _Outcome:
    """Load and chunk a new or changed file's ``data``.

    In line with the ingestor's ``chunker``, or in a worker process with one made there.
    """
    try:
        document = load(path, data, ocr=reading.ocr)
    except LoadError as error:
        return _Outcome(read.file_hash, failure=error.reason)
    notes = []
    if document.hidden_chars:
        notes.append(
            f"hidden text left out: {document.hidden_chars} characters a reader would not see"
        )
    if document.navigation_chars:
        notes.append(f"navigation left out: {document.navigation_chars} characters")
    if document.ocr_pages:
        notes.append(f"read by OCR: {document.ocr_pages} pages")
    if document.parser_warnings:
        first = document.parser_warnings[0][:120]
        notes.append(f"{len(document.parser_warnings)} parser warnings, the first: {first}")
    chunks = (chunker or _chunker_for(reading)).split(document)
    words = [keywords(chunk.text) for chunk in chunks]  # here, beside the writes
    return _Outcome(read.file_hash, chunks, words, notes=notes)


def _done(outcome: _Outcome) -> Future[_Outcome]:
    """An outcome known already, queued behind those the workers are still making."""
    future: Future[_Outcome] = Future()
    future.set_result(outcome)
    return future


def _chunker_for(reading: _Reading) -> Chunker:
    """A chunker for ``reading``, made once per process (it loads the tokenizer)."""
    global _chunker
    if _chunker is None or _chunker[0] != reading:
        _chunker = (reading, reading.chunker())
    return _chunker[1]


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
