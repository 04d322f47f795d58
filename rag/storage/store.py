"""The one interface to the Chroma collection that holds every chunk whole.

Chroma is the store of record: id, text, every metadata field and vector of each chunk, which
any Chroma client (LangChain's ``Chroma`` too) reads. :class:`ChunkStore` is what the rest of
the program calls: writes, reads, dense and keyword searches, per-file records. It stands on
the connection (:mod:`rag.storage.connection`: opening, locks, freshness, errors); the keyword
index beside it is derived and kept in step (:mod:`rag.storage.upkeep`); the embedded and
server kinds differ in how they see other processes' writes (:mod:`rag.storage.backends`).
Limits: every read is paged (``READ_PAGE``), as embedded Chroma fails a read of more than
about 32,766 records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from rag.settings import Settings
from rag.storage.records import (
    Hit,
    IndexedRecords,
    Metadata,
    Records,
    StoredChunk,
    next_position,
    position,
)
from rag.storage.upkeep import READ_PAGE, ROWS, rows_from_chroma

if TYPE_CHECKING:
    from numpy.typing import NDArray


from rag.storage.connection import StoreConnection


def open_store(
    settings: Settings,
    embedder_name: str,
    on_wait: Callable[[str], None] | None = None,
    check_embedder: bool = True,
) -> ChunkStore:
    """Open (or create) the collection, embedded or on a server as ``store.mode`` says.

    Raises:
        StoreError: the store is unreachable, or was built with another embedding model
            (unless ``check_embedder`` is off, for a store about to be reset).
    """
    from rag.storage.backends import EmbeddedChunkStore, ServerChunkStore

    if settings.store.mode == "embedded":
        return EmbeddedChunkStore(settings, embedder_name, on_wait, check_embedder)
    return ServerChunkStore(settings, embedder_name, on_wait, check_embedder)


class ChunkStore(StoreConnection):
    """One Chroma collection: every read, write and search. Build one with :func:`open_store`."""

    def records(self, roots: Iterable[str] | None = None) -> Records:
        """Per-file records, keyed by (root, source), for the given roots or all of them."""
        roots = sorted(set(roots)) if roots is not None else None
        if roots is not None and not roots:
            return {}
        return self._records(roots)

    def _records(self, roots: list[str] | None) -> Records:
        """From the keyword index, a file at a time (:class:`IndexedRecords`).

        Reading Chroma's metadata takes ~9 s and ~700 MB of memory for 100,000 chunks.
        """
        self._bring_index_in_step()
        return IndexedRecords(self, roots)

    def metadatas(self) -> Iterator[tuple[str, Metadata]]:
        """Id and metadata of every chunk Chroma holds, read a page at a time."""
        for chunk_id, metadata, _ in self._pages(None, ["metadatas"]):
            yield chunk_id, metadata

    def _pages(
        self, where: Mapping[str, Any] | None, include: list[str]
    ) -> Iterator[tuple[str, Metadata, Any]]:
        """(id, metadata, embedding) of every chunk matching ``where``, a page at a time.

        Embedded Chroma fails any single read of more than about 32,766 records ("too many
        SQL variables"). An embedded store is read under one shared lock, so the pages are a
        consistent view; a server's pages can shift under a concurrent write.
        """
        with self.reading():
            for page in self._read_pages(where, include):
                yield from page

    def embeddings_by_content(
        self, content_hashes: Sequence[str]
    ) -> dict[str, NDArray[np.float32]]:
        """Stored embeddings of chunks whose text has one of these hashes (same model).

        The keyword index finds the ids (a metadata filter reads the whole store); a server
        chunk the index has not seen yet is embedded again, which costs time, not correctness.
        """
        found: dict[str, NDArray[np.float32]] = {}
        with self.reading():
            held = self.index.with_content(sorted(set(content_hashes)))
            content_of = {chunk_id: content_hash for content_hash, chunk_id in held.items()}
            ids = list(content_of)
            for start in range(0, len(ids), READ_PAGE):
                result = self.collection.get(
                    ids=ids[start : start + READ_PAGE], include=["embeddings"]
                )
                for chunk_id, embedding in zip(
                    result["ids"], _rows(result["embeddings"]), strict=True
                ):
                    found[content_of[chunk_id]] = _vector(embedding)
        return found

    def write(
        self,
        chunks: Sequence[StoredChunk] = (),
        delete_ids: Iterable[str] = (),
        new_chunks: Sequence[StoredChunk] = (),
    ) -> None:
        """Upsert ``chunks``, add ``new_chunks`` and delete ``delete_ids``, as one step.

        ``new_chunks`` have ids the store cannot hold yet (their file was never stored):
        adding skips the existence check that makes an upsert slower.
        """
        keep = {chunk.id for chunk in chunks} | {chunk.id for chunk in new_chunks}
        stale = sorted(set(delete_ids) - keep)
        if not keep and not stale:
            return
        with self.writing():
            self.index.intend([*keep, *stale])
            indexed: list[tuple[str, str, Metadata]] = []
            for write, items in (
                (self.collection.add, new_chunks),
                (self.collection.upsert, chunks),
            ):
                for start in range(0, len(items), self.max_batch):
                    batch = items[start : start + self.max_batch]
                    stamp = self._stamp()
                    metadatas = [{**chunk.metadata, **stamp} for chunk in batch]
                    write(
                        ids=[chunk.id for chunk in batch],
                        embeddings=np.stack([chunk.embedding for chunk in batch]),
                        documents=[c.text for c in batch],
                        metadatas=cast(Any, metadatas),
                    )
                    indexed += zip(
                        [c.id for c in batch], [c.text for c in batch], metadatas, strict=True
                    )
            for start in range(0, len(stale), self.max_batch):
                self.collection.delete(ids=stale[start : start + self.max_batch])
            words = {c.id: c.words for c in [*chunks, *new_chunks] if c.words is not None}
            self.index.update(indexed, removed=stale, words=words)

    def _stamp(self) -> Metadata:
        """What a write adds to each chunk's metadata (a server's clock)."""
        return {}

    def query(
        self,
        embedding: NDArray[np.float32],
        k: int,
        sources: Iterable[str] | None = None,
        file_types: Iterable[str] | None = None,
    ) -> list[Hit]:
        """The ``k`` chunks nearest to ``embedding``, from these sources and file types only."""
        with self.reading():
            result = self.collection.query(
                query_embeddings=embedding.reshape(1, -1),
                n_results=k,
                where=cast(Any, _where(sources, file_types)),
                include=cast(Any, ["distances", "embeddings", *ROWS]),
            )
            ids = result["ids"][0]
            rows = self._stored_rows(
                ids, (result["documents"] or [[]])[0], (result["metadatas"] or [[]])[0]
            )
        return [
            Hit(chunk_id, *rows[chunk_id], float(distance), _vector(e))
            for chunk_id, distance, e in zip(
                ids,
                (result["distances"] or [[]])[0],
                (result["embeddings"] or [[]])[0],
                strict=True,
            )
            if chunk_id in rows
        ]

    def _stored_rows(
        self,
        ids: Sequence[str],
        documents: Sequence[str | None] | None,
        metadatas: Sequence[Any] | None,
    ) -> dict[str, tuple[str, Metadata]]:
        """The (text, metadata) of chunks Chroma returned, but a textless one's."""
        rows, _ = rows_from_chroma(ids, documents or [], metadatas or [])
        return {chunk_id: (text, metadata) for chunk_id, text, metadata in rows}

    def _chunks_of(self, result: Any) -> list[StoredChunk]:
        """The chunks of a Chroma ``get`` with embeddings, with their texts and metadata.

        A caller holds the lock; a chunk without a text is left out.
        """
        rows = self._stored_rows(result["ids"], result.get("documents"), result.get("metadatas"))
        return [
            StoredChunk(chunk_id, *rows[chunk_id], _vector(embedding))
            for chunk_id, embedding in zip(result["ids"], _rows(result["embeddings"]), strict=True)
            if chunk_id in rows
        ]

    def get(self, ids: Sequence[str]) -> list[StoredChunk]:
        """The chunks with these ids that exist, with text, metadata and embedding."""
        found: list[StoredChunk] = []
        for start in range(0, len(ids), READ_PAGE):
            with self.reading():
                result = self.collection.get(
                    ids=list(ids[start : start + READ_PAGE]),
                    include=cast(Any, ["embeddings", *ROWS]),
                )
                found += self._chunks_of(result)
        return found

    def next_chunks(self, metadatas: Sequence[Metadata]) -> list[StoredChunk | None]:
        """The chunk after each of these in its file (same version), or None at a file's end."""
        wanted = {next_position(m): i for i, m in enumerate(metadatas)}
        found: list[StoredChunk | None] = [None] * len(metadatas)
        if not wanted:
            return found
        with self.searching() as index:  # by id: a metadata filter reads the whole store
            ids = list(index.at(wanted).values())
            if not ids:
                return found
            result = self.collection.get(ids=ids, include=cast(Any, ["embeddings", *ROWS]))
            stored = self._chunks_of(result)
        for chunk in stored:
            if (key := position(chunk.metadata)) in wanted:
                found[wanted[key]] = chunk
        return found

    def ids(self, source: str | None = None) -> set[str]:
        """Ids of every chunk, or of one source's."""
        where = None if source is None else {"source": source}
        return {chunk_id for chunk_id, _, _ in self._pages(where, [])}

    def vectors(self) -> Iterator[tuple[str, NDArray[np.float32]]]:
        """Every chunk's id and vector, a page at a time (for exact-search checks)."""
        for chunk_id, _, embedding in self._pages(None, ["embeddings"]):
            yield chunk_id, _vector(embedding)

    def keyword_search(
        self,
        query: str,
        n: int,
        sources: Iterable[str] | None = None,
        file_types: Iterable[str] | None = None,
        budget: int | None = None,
    ) -> list[tuple[str, float]]:
        """The ``n`` best BM25 (chunk id, score) pairs, from these sources and file types only."""
        types = {t.lower().lstrip(".") for t in file_types or ()}
        with self.searching() as index:
            return index.search(
                query, n, None if sources is None else set(sources), types, budget=budget
            )

    def term_weights(self, query: str) -> dict[str, float]:
        """The query's words by rarity in the store (BM25's idf)."""
        with self.searching() as index:
            return index.weights(query)

    def known_words(self, words: Iterable[str]) -> set[str]:
        """Those of these keywords some chunk holds."""
        with self.searching() as index:
            return {word for word in words if index.vocabulary_has(word)}

    def texts(self, ids: Sequence[str]) -> dict[str, str]:
        """Text of the chunks with these ids."""
        return {chunk_id: text for chunk_id, (text, _) in self.rows(ids).items()}

    def file_chunks(self, root: str, source: str) -> list[tuple[str, Metadata]]:
        """Text and metadata of one file's chunks, in reading order (to read the file back).

        The keyword index finds the ids; the texts come from Chroma, the store of record.
        """
        self._bring_index_in_step()
        with self.indexed() as index:
            ids = [chunk_id for chunk_id, _ in index.rows_of(root, source)]
        return sorted(self.rows(ids).values(), key=lambda row: int(row[1]["chunk_index"]))

    def rows(self, ids: Sequence[str]) -> dict[str, tuple[str, Metadata]]:
        """(text, metadata) of the chunks with these ids, read from Chroma a page at a time."""
        rows: dict[str, tuple[str, Metadata]] = {}
        for start in range(0, len(ids), READ_PAGE):
            with self.reading():
                result = self.collection.get(
                    ids=list(ids[start : start + READ_PAGE]), include=cast(Any, ROWS)
                )
                rows.update(
                    self._stored_rows(
                        result["ids"], result.get("documents"), result.get("metadatas")
                    )
                )
        return rows

    def files(self) -> dict[tuple[str, str], int]:
        """Chunk count of every stored file by (root, source), counted by the keyword index."""
        self._bring_index_in_step()
        with self.indexed() as index:
            return index.file_counts()

    def sources(self) -> dict[str, int]:
        """Chunk count of every stored source path (files of one name in several roots summed)."""
        counts: dict[str, int] = {}
        for (_, source), count in self.files().items():
            counts[source] = counts.get(source, 0) + count
        return dict(sorted(counts.items()))


def _where(
    sources: Iterable[str] | None, file_types: Iterable[str] | None
) -> Mapping[str, Any] | None:
    """A Chroma filter: {'source': {'$in': [...]}} and/or {'file_type': {'$in': [...]}}."""
    clauses: list[dict[str, Any]] = []
    if sources:
        clauses.append({"source": {"$in": sorted(sources)}})
    if file_types:
        clauses.append({"file_type": {"$in": sorted(t.lower().lstrip(".") for t in file_types)}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _rows(embeddings: Any) -> Any:
    """A Chroma result's embeddings, or nothing (None when there were no ids)."""
    return embeddings if embeddings is not None else []


def _vector(embedding: Any) -> NDArray[np.float32]:
    return np.asarray(embedding, dtype=np.float32)
