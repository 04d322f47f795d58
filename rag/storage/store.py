"""The one interface to the Chroma collection that holds every chunk whole.

Chroma is the store of record: id, text, every metadata field and vector of each chunk, which
any Chroma client (LangChain's ``Chroma`` too) reads. :class:`ChunkStore` is what the rest of
the program calls: writes, reads, dense and keyword searches, per-file records, locking. The
keyword index beside it is derived and kept in step (:mod:`rag.storage.upkeep`); the embedded
and server kinds differ in how they see other processes' writes (:mod:`rag.storage.backends`).
Limits: every read is paged (``READ_PAGE``), as embedded Chroma fails a read of more than
about 32,766 records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from rag.errors import RagError
from rag.settings import Settings
from rag.storage.keywords import KeywordIndex
from rag.storage.locking import NoLock, StoreLock
from rag.storage.records import (
    Hit,
    IndexedRecords,
    Metadata,
    Records,
    StoredChunk,
    next_position,
    position,
)
from rag.storage.upkeep import READ_PAGE, ROWS, fill_chroma, reconcile, settle

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from numpy.typing import NDArray

log = logging.getLogger(__name__)

# How far before the newest stamp it has seen a server-mode index reads again: writes stamped
# earlier that were still landing.
CATCH_UP_MARGIN_S = 30.0
# How often at most a server-mode index compares every id when the counts disagree.
FULL_RECONCILE_S = 300.0


class StoreError(RagError):
    """The store cannot be opened or does not match the current settings."""


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


class ChunkStore:
    """One Chroma collection: what both backends share. Build one with :func:`open_store`."""

    lock: StoreLock | NoLock
    _advice: str  # what to check when Chroma fails, for the error message

    def __init__(
        self,
        settings: Settings,
        embedder_name: str,
        on_wait: Callable[[str], None] | None = None,
        check_embedder: bool = True,
    ) -> None:
        self.settings = settings
        self.embedder_name = embedder_name
        self._check_embedder = check_embedder
        self.lock = self._lock(on_wait)
        with self.lock.exclusive():
            self._note_generation()
            self.client = self._open_client()
            self.keywords: KeywordIndex | None = None
            try:
                self.max_batch = self.client.get_max_batch_size()
                self.collection = self._open_collection()
                self._tune()
                self.keywords = KeywordIndex(settings.keywords_path())
                settle(self)
                fill_chroma(self)
                self._check_index()
            except BaseException:
                self.close()  # a refused store keeps no files or threads open
                raise

    def _lock(self, on_wait: Callable[[str], None] | None) -> StoreLock | NoLock:
        """What guards writers from each other."""
        raise NotImplementedError

    def _note_generation(self) -> None:
        """Note what a later refresh compares against, before the client opens."""

    @property
    def location(self) -> str:
        """Where the store lives, for messages."""
        raise NotImplementedError

    def _connect(self) -> ClientAPI:
        raise NotImplementedError

    def _open_client(self) -> ClientAPI:
        """A client of the store; any failure to open it as a StoreError that says where."""
        try:
            return self._connect()
        except Exception as error:  # chromadb, httpx and sqlite raise many unrelated types
            msg = f"cannot open the Chroma store at {self.location}: {error}"
            raise StoreError(msg) from error

    def _refresh(self) -> None:
        """See what other processes wrote since this one last looked."""
        raise NotImplementedError

    def _announce_write(self) -> None:
        """Tell other processes that this one wrote."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the client (an embedded store's files, threads and memory) and the index."""
        self._close_client()
        if self.keywords is not None:
            self.keywords.close()

    def _close_client(self) -> None:
        cast(Any, self.client).close()  # PersistentClient has close(); ClientAPI omits it

    @property
    def index(self) -> KeywordIndex:
        """The keyword index of the chunks, up to date with every write."""
        assert self.keywords is not None, "the store is not open"
        return self.keywords

    @contextmanager
    def searching(self) -> Iterator[KeywordIndex]:
        """The keyword index, up to date with every write, while the block reads it."""
        with self.reading():
            self._catch_up()
            yield self.index

    def prune(self, chunk_ids: Set[str]) -> None:
        """Forget the keyword entries of these chunks when the store no longer holds them.

        A search found them; a server's deletions reach another machine's index only when the
        counts next disagree, so they are dropped as they are met.
        """
        with self.reading():
            held = set(self.collection.get(ids=list(chunk_ids), include=[])["ids"])
            self.index.update(removed=chunk_ids - held)

    def _check_index(self) -> None:
        """At open: rebuild what the keyword index lacks from Chroma.

        For a lost file or an older version's store; chunks whose text only a lost index held
        are taken out.
        """
        if len(self.index) != self.collection.count():
            reconcile(self)

    def rebuild_index(self) -> int:
        """Build the keyword index again from the collection; returns the chunks it holds."""
        with self.writing():
            fill_chroma(self)
            self.index.clear()
            reconcile(self)
            self.index.set_meta(chroma_rows=1)
            return len(self.index)

    def _catch_up(self) -> None:
        """Before a search: see what other machines wrote (each one's writes keep it in step)."""

    def __enter__(self) -> ChunkStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold off writers, and see everything they wrote before."""
        with self.lock.shared(), self._failures("read"):
            self._refresh()
            settle(self)
            yield

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Be the only one touching the store; tell other processes afterwards."""
        with self.lock.exclusive(), self._failures("write"):
            self._refresh()
            settle(self)
            try:
                yield
            finally:
                self._announce_write()

    @contextmanager
    def _failures(self, action: str) -> Iterator[None]:
        """Chroma's own errors (a server gone, a full disk, a corrupt file) as a StoreError."""
        try:
            yield
        except RagError:
            raise
        except Exception as error:  # chromadb, httpx and sqlite raise many unrelated types
            msg = (
                f"cannot {action} the Chroma store at {self.location}: "
                f"{type(error).__name__}: {error}; {self._advice}"
            )
            raise StoreError(msg) from error

    def _chroma_settings(self) -> Any:
        from chromadb.config import Settings as ChromaSettings

        return ChromaSettings(anonymized_telemetry=False, allow_reset=True)

    def _open_collection(self) -> Collection:
        hnsw = self.settings.store.hnsw
        collection = self.client.get_or_create_collection(
            self.settings.collection_name,
            metadata={"embedder": self.embedder_name},
            configuration={  # when the collection is created; ignored when it exists
                "hnsw": {
                    "space": "cosine",
                    "ef_search": hnsw.ef_search,
                    "ef_construction": hnsw.ef_construction,
                    "max_neighbors": hnsw.max_neighbors,
                }
            },
            embedding_function=None,
        )
        built_with = (collection.metadata or {}).get("embedder")
        if self._check_embedder and built_with != self.embedder_name:
            msg = (
                f"collection {collection.name!r} at {self.location} was built with embedding "
                f"model {built_with!r}, not the configured {self.embedder_name!r}; "
                "re-run the ingest with --reset to rebuild it"
            )
            raise StoreError(msg)
        return collection

    def _tune(self) -> None:
        """Give an existing collection the configured ``ef_search``.

        It is the one HNSW setting that can change after creation; this runs while the store
        opens, which holds the write lock. Chroma reads it when it loads the vector index: a
        process that loaded it already (a Chroma server too) keeps the value it loaded.
        """
        wanted = self.settings.store.hnsw.ef_search
        hnsw = (self.collection.configuration or {}).get("hnsw") or {}
        if hnsw.get("ef_search") != wanted:
            self.collection.modify(configuration={"hnsw": {"ef_search": wanted}})

    def reset(self) -> None:
        """Drop every chunk: delete the collection and create it again."""
        with self.writing():
            self.client.delete_collection(self.settings.collection_name)
            self.collection = self._open_collection()
            self.index.clear()
            self._check_embedder = True

    def drop(self) -> None:
        """Delete the collection with every chunk and record in it (a workspace removed)."""
        with self.lock.exclusive(), self._failures("write"):
            self._refresh()
            self.client.delete_collection(self.settings.collection_name)
            self.index.close()
            self.keywords = None
            for file, _ in _index_files(self.settings, self.settings.collection_name):
                file.unlink()
            self._announce_drop()

    def _announce_drop(self) -> None:
        """Tell other processes that the collection is gone."""
        self._announce_write()

    def rename(self, collection_name: str) -> None:
        """Give the collection another name (a workspace renamed); reopen the store after."""
        with self.writing():
            self.collection.modify(name=collection_name)
            self.index.close()
            for old, new in _index_files(
                self.settings, self.settings.collection_name, collection_name
            ):
                old.rename(new)
            self.keywords = KeywordIndex(self.settings.keywords_path(collection_name))

    def count(self) -> int:
        """Number of chunks stored."""
        with self.reading():
            return self.collection.count()

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

    def _bring_index_in_step(self) -> None:
        """Make the keyword index hold what the store holds, before its records are trusted.

        Reading settles a killed write's part; an embedded store's index follows every other
        write under the store's lock.
        """
        with self.reading():
            pass

    @contextmanager
    def indexed(self) -> Iterator[KeywordIndex]:
        """The keyword index alone, between writes: no call to Chroma (a server's round trip)."""
        with self.lock.shared():
            yield self.index

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

    def _read_pages(
        self, where: Mapping[str, Any] | None, include: list[str]
    ) -> Iterator[list[tuple[str, Metadata, Any]]]:
        """The pages of :meth:`_pages`, read by a caller that holds the lock."""
        offset = 0
        while True:
            page = self.collection.get(
                where=cast(Any, where), include=cast(Any, include), limit=READ_PAGE, offset=offset
            )
            ids = page["ids"]
            metadatas = page["metadatas"] or [{}] * len(ids)
            embeddings: Any = page["embeddings"]
            if embeddings is None:
                embeddings = [None] * len(ids)
            yield list(zip(ids, cast(Any, metadatas), embeddings, strict=True))
            if len(ids) < READ_PAGE:
                return
            offset += len(ids)

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
        return {
            i: (text, cast(Metadata, metadata))
            for i, text, metadata in zip(ids, documents or [], metadatas or [], strict=True)
            if text is not None
        }

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

    def collection_names(self) -> list[str]:
        """Every collection the store holds (each workspace's)."""
        with self.reading():
            return [collection.name for collection in self.client.list_collections()]

    def built_with(self) -> str | None:
        """The embedding model the collection records it was built with."""
        with self.reading():
            return cast(str | None, (self.collection.metadata or {}).get("embedder"))

    def index_state(self) -> tuple[int, int]:
        """Chunks in the keyword index, and those a stopped write left unsettled."""
        with self.reading():
            return len(self.index), len(self.index.pending())

    @contextmanager
    def writer(self) -> Iterator[None]:
        """Be the only writing process (an ingest) for the duration of the block."""
        with self.lock.writer():
            yield

    @contextmanager
    def telling(self, on_wait: Callable[[str], None]) -> Iterator[None]:
        """Within the block, this thread's waits for the store are told to ``on_wait``."""
        with self.lock.telling(on_wait):
            yield

    def texts(self, ids: Sequence[str]) -> dict[str, str]:
        """Text of the chunks with these ids."""
        texts: dict[str, str] = {}
        for start in range(0, len(ids), READ_PAGE):
            with self.reading():
                result = self.collection.get(
                    ids=list(ids[start : start + READ_PAGE]), include=cast(Any, ROWS)
                )
                rows = self._stored_rows(
                    result["ids"], result.get("documents"), result.get("metadatas")
                )
                texts.update({chunk_id: text for chunk_id, (text, _) in rows.items()})
        return texts

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


def _index_files(settings: Settings, collection: str, renamed: str = "") -> list[tuple[Path, Path]]:
    """The keyword index's files of a collection that exist, each with its ``renamed`` name."""
    old, new = settings.keywords_path(collection), settings.keywords_path(renamed or collection)
    return [
        (Path(f"{old}{suffix}"), Path(f"{new}{suffix}"))
        for suffix in ("", "-wal", "-shm")
        if Path(f"{old}{suffix}").exists()
    ]


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
