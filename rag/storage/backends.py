"""The two kinds of store: embedded Chroma under the data dir, and a Chroma server.

An embedded client keeps the vector index it loaded in memory, so every write bumps a
generation number beside the store, and every read or write first reopens the client when the
generation moved. With a Chroma server, every chunk is stamped with the server's clock when
written; a reader that sees the server's generation move reads the chunks stamped since it last
looked (less ``CATCH_UP_MARGIN_S``), and compares every id when the counts disagree (at most
every ``FULL_RECONCILE_S``, and always before an ingest trusts the records); a search's hit
that the server no longer holds is dropped as it is met. Limits: a server write that lands more
than ``CATCH_UP_MARGIN_S`` after its stamp is seen only at such a comparison.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from rag.storage.connection import CATCH_UP_MARGIN_S, FULL_RECONCILE_S
from rag.storage.locking import NoLock, StoreLock
from rag.storage.records import Metadata
from rag.storage.store import ChunkStore
from rag.storage.upkeep import reconcile

if TYPE_CHECKING:
    from chromadb.api import ClientAPI


class EmbeddedChunkStore(ChunkStore):
    """Embedded Chroma under the data dir, guarded for several processes by a file lock.

    Every write bumps a generation number beside the store, and every read or write first
    reopens the client when the generation moved (see the module's docstring).
    """

    _advice = "check the disk (space, permissions); `rag doctor` checks the store"

    def _lock(self, on_wait: Callable[[str], None] | None) -> StoreLock:
        lock = StoreLock(
            self.settings.lock_dir, self.settings.store.embedded.lock_timeout_s, on_wait
        )
        self._generation_file = lock.folder / "generation"
        self._refresh_lock = threading.Lock()
        return lock

    def _note_generation(self) -> None:
        self._seen_generation = self._generation()

    @property
    def location(self) -> str:
        """The store's folder."""
        return str(self.settings.chroma_path)

    def _connect(self) -> ClientAPI:
        import chromadb

        self.settings.chroma_path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(
            path=str(self.settings.chroma_path), settings=self._chroma_settings()
        )

    def _generation(self) -> int:
        try:
            return int(self._generation_file.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _refresh(self) -> None:
        """Reopen the client when another process wrote since this one last looked."""
        with self._refresh_lock:  # threads of one process (the chat UI) share this store
            generation = self._generation()
            if generation != self._seen_generation:
                self._close_client()
                self.client = self._connect()
                self.collection = self._open_collection()
                self._seen_generation = generation

    def _announce_write(self) -> None:
        self._seen_generation = self._generation() + 1
        self._generation_file.write_text(str(self._seen_generation))


class ServerChunkStore(ChunkStore):
    """A collection on a Chroma server (``chroma run``), shared by any number of processes.

    The server serializes writes itself, so there is no lock; the generation is a token in the
    collection's metadata that every write replaces.
    """

    _advice = "check that the Chroma server is running and reachable"

    def _lock(self, on_wait: Callable[[str], None] | None) -> NoLock:
        self._catch_up_lock = threading.Lock()
        return NoLock()

    @property
    def location(self) -> str:
        """The server's URL."""
        server = self.settings.store.server
        return f"http://{server.host}:{server.port}"

    def _connect(self) -> ClientAPI:
        import chromadb

        server = self.settings.store.server
        client = chromadb.HttpClient(
            host=server.host, port=server.port, settings=self._chroma_settings()
        )
        client.heartbeat()
        return client

    def _refresh(self) -> None:
        """Look the collection up again.

        Another process's reset replaces it with a new one of the same name, and this handle
        must never point at the dropped one.
        """
        self.collection = self._open_collection()

    def _check_index(self) -> None:
        self._catch_up()

    def _catch_up(self) -> None:
        """Read the chunks written since the index last looked, when the generation moved.

        When the counts still disagree, every id is compared, at most every
        ``FULL_RECONCILE_S`` (writers elsewhere keep the counts moving).
        """
        seen = f"{self.collection.id}:{(self.collection.metadata or {}).get('generation', '')}"
        if seen == self.index.meta("generation"):
            return
        with self._catch_up_lock:  # one thread reads for all (the API's threads)
            if seen != self.index.meta("generation"):
                self._read_since(seen)

    def _bring_index_in_step(self) -> None:
        """Catch up, then compare every id now when the counts still disagree.

        Records decide what an ingest writes, so a deletion made elsewhere is not left to
        the next full compare (``FULL_RECONCILE_S``) or to a search that meets it.
        """
        with self.reading():
            self._catch_up()
            with self._catch_up_lock:
                self._compare_every_id()

    def _read_since(self, seen: str) -> None:
        """Read the chunks stamped since the last look; every id when the counts disagree."""
        since = float(self.index.meta("written") or 0)
        newest = reconcile(self, {"written": {"$gte": since - CATCH_UP_MARGIN_S}})
        newest = max(newest, self._compare_every_id(at_most_every_s=FULL_RECONCILE_S))
        self.index.set_meta(generation=seen, written=max(since, newest))

    def _compare_every_id(self, at_most_every_s: float = 0.0) -> float:
        """Compare every id when the counts disagree: a deletion made elsewhere.

        Not again within ``at_most_every_s`` of the last comparison. Returns the newest write
        stamp seen (0 when none).
        """
        compared = float(self.index.meta("compared") or 0)
        if len(self.index) == self.collection.count() or time.time() - compared <= at_most_every_s:
            return 0.0
        newest = reconcile(self)
        self.index.set_meta(compared=time.time())
        return newest

    def _stamp(self) -> Metadata:
        """The server's clock in seconds: what a reader's index catches up from."""
        return {"written": self.client.heartbeat() / 1e9}

    def _announce_drop(self) -> None:
        """Nothing to do: readers find the collection gone (or a new one) when they look."""

    def _announce_write(self) -> None:
        # A random token: concurrent writers to a server never repeat one.
        self.collection.modify(
            metadata={"embedder": self.embedder_name, "generation": uuid.uuid4().hex}
        )
