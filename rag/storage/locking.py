"""Cross-process locks that make one embedded Chroma store safe to share.

Embedded Chroma is not safe for several writing processes: concurrent writers have left a
store hanging or crashing on the next open. So, beside the store:

- ``writer.lock`` is held by one ingest for its whole run: writers queue up, one at a time;
- ``access.lock`` is held exclusively for each write (a file's chunks in, its stale chunks out)
  and shared for each read, so readers never see a half-written file.

Both are ``flock`` locks: the kernel drops them when their process dies, even by SIGKILL, so
a killed ingest never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from rag.errors import RagError


class LockTimeoutError(RagError, TimeoutError):
    """Another process held the store lock for longer than the configured wait."""


class StoreLock:
    """Writer queue plus reader/writer access lock in one folder."""

    def __init__(
        self,
        folder: Path,
        timeout_s: float,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.folder = folder
        self.timeout_s = timeout_s
        self.on_wait = on_wait
        # flock does not exclude threads of one process that share a descriptor; this does.
        self._access = threading.RLock()
        self._held_exclusive = threading.local()
        self._told = threading.local()  # this thread's own listener (one browser session's)

    @contextlib.contextmanager
    def telling(self, on_wait: Callable[[str], None]) -> Iterator[None]:
        """Within the block, this thread's waits are told to ``on_wait`` instead."""
        before = getattr(self._told, "on_wait", None)
        self._told.on_wait = on_wait
        try:
            yield
        finally:
            self._told.on_wait = before

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Be the only writing process for the duration of the block."""
        with self._flock("writer.lock", fcntl.LOCK_EX, "another ingest is writing to the store"):
            yield

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Keep readers out while one write goes in."""
        with self._access, self._flock("access.lock", fcntl.LOCK_EX, "the store is being read"):
            self._held_exclusive.value = True
            try:
                yield
            finally:
                self._held_exclusive.value = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Read while no write is under way (re-entrant inside :meth:`exclusive`)."""
        if getattr(self._held_exclusive, "value", False):
            yield
            return
        with self._flock("access.lock", fcntl.LOCK_SH, "the store is being written"):
            yield

    @contextlib.contextmanager
    def _flock(self, name: str, mode: int, holder: str) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._acquire(fd, mode, f"{holder} ({path}); waiting")
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _acquire(self, fd: int, mode: int, waiting_message: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        told = False
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    msg = f"gave up after {self.timeout_s:.0f}s: {waiting_message}"
                    raise LockTimeoutError(msg) from None
                on_wait = getattr(self._told, "on_wait", None) or self.on_wait
                if not told and on_wait is not None:
                    on_wait(waiting_message)
                    told = True
                time.sleep(delay)
                delay = min(delay * 2, 0.2)


class NoLock(StoreLock):
    """For a Chroma server, which orders concurrent requests itself."""

    def __init__(self) -> None:
        super().__init__(Path(), 0)

    @contextlib.contextmanager
    def _flock(self, name: str, mode: int, holder: str) -> Iterator[None]:
        yield
