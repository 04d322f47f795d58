"""The store's connection: the collection opened, guarded for several processes, kept fresh.

:class:`StoreConnection` opens the Chroma client and the collection (checking the embedding
model that built it), gives readers and writers their locks (``reading``, ``writing``, the
ingest's ``writer``), reopens what another process's write made stale, turns Chroma's own
errors into a :class:`StoreError` that says where and what to check, and keeps the derived
keyword index in step at open (:mod:`rag.storage.upkeep`). What is read and written through it
is :class:`rag.storage.store.ChunkStore`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Set
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, cast

from rag.errors import RagError
from rag.settings import Settings
from rag.storage.keywords import KeywordIndex
from rag.storage.locking import NoLock, StoreLock
from rag.storage.records import (
    Metadata,
)
from rag.storage.upkeep import READ_PAGE, fill_chroma, reconcile, settle

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection


log = logging.getLogger(__name__)

# How far before the newest stamp it has seen a server-mode index reads again: writes stamped
# earlier that were still landing.
CATCH_UP_MARGIN_S = 30.0
# How often at most a server-mode index compares every id when the counts disagree.
FULL_RECONCILE_S = 300.0


class StoreError(RagError):
    """The store cannot be opened or does not match the current settings."""


class StoreConnection:
    """The collection, opened and guarded: what every store operation stands on."""

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
        with self.lock.exclusive(), self._failures("open"):
            self._note_generation()
            self.client = self._connect()
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
        """A client of the store (its failures become a StoreError in ``_failures``)."""
        raise NotImplementedError

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

    def __enter__(self) -> Self:
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


def _index_files(settings: Settings, collection: str, renamed: str = "") -> list[tuple[Path, Path]]:
    """The keyword index's files of a collection that exist, each with its ``renamed`` name."""
    old, new = settings.keywords_path(collection), settings.keywords_path(renamed or collection)
    return [
        (Path(f"{old}{suffix}"), Path(f"{new}{suffix}"))
        for suffix in ("", "-wal", "-shm")
        if Path(f"{old}{suffix}").exists()
    ]
