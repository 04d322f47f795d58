"""Ingest's write step: each group's chunks in, the files' stale chunks out, in one write."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from rag.ingest.embed import EmbeddingRunner
from rag.storage.records import StoredChunk
from rag.storage.store import ChunkStore


@dataclass
class GroupWrite:
    """One group's write: chunks of files new to the store, of changed files, stale ids."""

    new_chunks: list[StoredChunk] = field(default_factory=list)
    chunks: list[StoredChunk] = field(default_factory=list)
    stale: set[str] = field(default_factory=set)


class GroupWriter:
    """Writes groups in order; in the background while a GPU embeds the next group.

    On a CPU the writes stay in line: the model already keeps every core busy, and a write
    thread beside it slows the embedding more than it saves. At most one write is pending;
    an error in a background write comes out of the next submit or the exit.
    """

    def __init__(self, store: ChunkStore, embedding: EmbeddingRunner) -> None:
        self.store = store
        self.embedding = embedding
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self.pending: Future[None] | None = None

    def submit(self, write: GroupWrite) -> None:
        """Write this group once the one before is written (in the background on a GPU)."""
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

    def __enter__(self) -> GroupWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._wait()
        finally:
            self.pool.shutdown(wait=True)
