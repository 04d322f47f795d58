"""What the store holds, as the rest of the program sees it: chunks, hits, per-file records.

The per-file record lives in the chunks' own metadata: every chunk of a file carries the file's
content hash, the pipeline that made it, its index and the file's chunk count. A file is
stored *completely* when all its chunks share one hash and pipeline and the indexes run
0..count-1, so the record and the chunks can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from rag.storage.store import ChunkStore


@dataclass
class FileRecord:
    """What the store holds for one source file."""

    root: str
    source: str
    chunk_ids: set[str] = field(default_factory=set)
    versions: set[tuple[str, str]] = field(default_factory=set)  # (file_hash, pipeline)
    indexes: set[int] = field(default_factory=set)
    chunk_counts: set[int] = field(default_factory=set)

    def add(self, chunk_id: str, metadata: Mapping[str, Any]) -> None:
        """Count one stored chunk of this file."""
        self.chunk_ids.add(chunk_id)
        self.versions.add((str(metadata["file_hash"]), str(metadata["pipeline"])))
        self.indexes.add(int(metadata["chunk_index"]))
        self.chunk_counts.add(int(metadata["chunk_count"]))

    @property
    def complete(self) -> bool:
        """True when exactly one version is stored, with all its chunks, each once."""
        return len(self.versions) == 1 and self.holds(*next(iter(self.versions)))

    def holds(self, file_hash: str, pipeline: str) -> bool:
        """True when exactly one complete version, this one, is stored."""
        return (
            self.versions == {(file_hash, pipeline)}
            and len(self.chunk_counts) == 1
            and self.indexes == set(range(next(iter(self.chunk_counts))))
            and len(self.chunk_ids) == len(self.indexes)
        )

    @property
    def file_hash(self) -> str | None:
        """The stored content hash when there is a single one."""
        return next(iter(self.versions))[0] if len(self.versions) == 1 else None


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as written to the store."""

    id: str
    text: str
    metadata: Metadata
    embedding: NDArray[np.float32]
    words: Sequence[str] | None = None  # its keywords, when made already (by a worker)


@dataclass(frozen=True)
class Hit:
    """A query result: the chunk, its unit-length embedding, its cosine distance (0: same)."""

    id: str
    text: str
    metadata: Metadata
    distance: float
    embedding: NDArray[np.float32]


Records = Mapping[tuple[str, str], FileRecord]


class IndexedRecords(Records):
    """The records of files under some roots, read a file at a time from the keyword index.

    What an ingest of a million chunks needs in memory is then the files' names, not every
    chunk's id. The store brings the index in step first (``ChunkStore._bring_index_in_step``).
    """

    def __init__(self, store: ChunkStore, roots: list[str] | None) -> None:
        self.store = store
        self.roots = roots

    def __getitem__(self, key: tuple[str, str]) -> FileRecord:
        with self.store.indexed() as index:
            rows = index.rows_of(*key)
        if not rows or (self.roots is not None and key[0] not in self.roots):
            raise KeyError(key)
        record = FileRecord(*key)
        for chunk_id, metadata in rows:
            record.add(chunk_id, metadata)
        return record

    def __iter__(self) -> Iterator[tuple[str, str]]:
        with self.store.indexed() as index:
            return iter(list(index.files(self.roots)))

    def __len__(self) -> int:
        return sum(1 for _ in self)


Position = tuple[Any, Any, Any, int]  # root, source, file version, chunk index


def position(metadata: Metadata) -> Position:
    """Where a chunk stands: its file (root, source, file hash) and its index in it."""
    m = metadata
    return (m["root"], m["source"], m["file_hash"], int(m["chunk_index"]))


def next_position(metadata: Metadata) -> Position:
    """The position of the chunk after this one in its file."""
    root, source, file_hash, index = position(metadata)
    return (root, source, file_hash, index + 1)


Metadata = dict[str, str | int | float | bool]
