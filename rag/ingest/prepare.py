"""Ingest's prepare step: each file read and hashed; a new or changed one loaded and chunked.

In line, or past the first ``_POOL_MIN_FILES`` changed files in worker processes
(``ingest.prepare_workers``) that run ahead of the embedding and the writes: Chroma's ``add``
holds Python's lock while it writes, so threads could not. Limits: the workers import the
program's main module (``spawn``), so a script that ingests through them needs an
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rag.documents.chunking import Chunk, Chunker
from rag.documents.document import LoadedDocument, LoadError
from rag.documents.loaders import load
from rag.documents.scanning import SourceFile
from rag.ingest.hashing import digest
from rag.models.embeddings import Embedder
from rag.settings import EmbeddingSettings
from rag.storage.keywords import keywords
from rag.storage.records import FileRecord

_POOL_MIN_FILES = 16  # changed files loaded in line first: starting the workers takes seconds


_AHEAD_FILES = 256  # files each worker may be given before the embedding takes them: groups' worth


_AHEAD_BYTES = 64 * 2**20  # file bytes the workers may hold at once


@dataclass(frozen=True)
class ChunkingRecipe:
    """What reading and chunking a file needs, sent to each worker process."""

    embedding: EmbeddingSettings  # the tokenizer that measures chunks
    max_tokens: int
    overlap_tokens: int
    ocr: bool

    def chunker(self) -> Chunker:
        """A chunker made to this recipe (it loads the tokenizer)."""
        spans = Embedder(self.embedding).token_spans
        return Chunker(spans, self.max_tokens, self.overlap_tokens)


@dataclass
class FileOutcome:
    """One file read: its chunks (None when unchanged or failed), or why it failed."""

    file_hash: str = ""
    chunks: list[Chunk] | None = None
    words: list[list[str]] = field(default_factory=list)  # each chunk's keywords
    failure: str | None = None
    notes: list[str] = field(default_factory=list)


def held_version(record: FileRecord | None, pipeline: str) -> tuple[str, str] | None:
    """The (file hash, pipeline) a record holds completely, if any."""
    if record is None or not record.complete:
        return None
    version = next(iter(record.versions))
    return version if version[1] == pipeline else None


_chunker: tuple[ChunkingRecipe, Chunker] | None = (
    None  # this process's last, kept for the next file
)


def _read(file: SourceFile, held: tuple[str, str] | None) -> tuple[FileOutcome, bytes | None]:
    """Read and hash one file: its bytes when it must be loaded (new or changed), else None."""
    try:
        data = file.path.read_bytes()
    except OSError as error:
        return FileOutcome(failure=f"cannot read: {error.strerror or error}"), None
    file_hash = digest(data)
    if held is not None and held[0] == file_hash:
        return FileOutcome(file_hash), None  # unchanged
    return FileOutcome(file_hash), data


def load_and_chunk(
    path: Path,
    data: bytes,
    read: FileOutcome,
    reading: ChunkingRecipe,
    chunker: Chunker | None = None,
    loader: Callable[[Path, bytes], LoadedDocument] | None = None,
) -> FileOutcome:
    """Load and chunk a new or changed file's ``data`` (with ``loader``, else by its type).

    In line with the ingestor's ``chunker``, or in a worker process with one made there.
    """
    try:
        document = loader(path, data) if loader else load(path, data, ocr=reading.ocr)
    except LoadError as error:
        return FileOutcome(read.file_hash, failure=error.reason)
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
    return FileOutcome(read.file_hash, chunks, words, notes=notes)


def _done(outcome: FileOutcome) -> Future[FileOutcome]:
    """An outcome known already, queued behind those the workers are still making."""
    future: Future[FileOutcome] = Future()
    future.set_result(outcome)
    return future


def _chunker_for(reading: ChunkingRecipe) -> Chunker:
    """A chunker for ``reading``, made once per process (it loads the tokenizer)."""
    global _chunker
    if _chunker is None or _chunker[0] != reading:
        _chunker = (reading, reading.chunker())
    return _chunker[1]


def prepare_files(
    files: Sequence[SourceFile],
    records: Mapping[tuple[str, str], FileRecord],
    pipeline: str,
    recipe: ChunkingRecipe,
    chunker: Chunker,
    workers: int,
) -> Iterator[tuple[SourceFile, FileRecord | None, FileOutcome]]:
    """Each file read and hashed, then loaded and chunked when new or changed, in order.

    Past the first ``_POOL_MIN_FILES`` changed files (what a watched folder's sync sees),
    worker processes (``ingest.prepare_workers``) load and chunk them, running ahead of
    the embedding and the writes (``_AHEAD_FILES`` files each, ``_AHEAD_BYTES`` in all):
    Chroma's ``add`` holds Python's lock while it writes, so a thread could not read
    meanwhile.
    """
    pool: ProcessPoolExecutor | None = None
    changed = in_flight = 0  # files loaded so far; bytes the workers hold
    ahead: deque[tuple[SourceFile, FileRecord | None, Future[FileOutcome], int]] = deque()
    try:
        for file in files:
            record = records.get((file.root, file.source))
            outcome, data = _read(file, held_version(record, pipeline))
            if data is None:
                ahead.append((file, record, _done(outcome), 0))
            elif workers and changed >= _POOL_MIN_FILES:
                if pool is None:
                    spawn = multiprocessing.get_context("spawn")  # never fork Chroma's threads
                    pool = ProcessPoolExecutor(workers, mp_context=spawn)
                submitted = pool.submit(load_and_chunk, file.path, data, outcome, recipe)
                ahead.append((file, record, submitted, len(data)))
                in_flight += len(data)
            else:
                loaded = load_and_chunk(file.path, data, outcome, recipe, chunker)
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
