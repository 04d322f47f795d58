"""Keep the store in sync with folders while they change (``rag ingest --watch``).

File events only say *that* something changed; each sync then compares the whole folder with
the store, which is cheap for unchanged files (one hash each) and cannot miss an event that
the operating system dropped. Events are debounced so a burst of saves costs one sync. A sync
that fails (a store server down, another writer holding the store too long) is reported and
retried after a growing pause (1 s doubling to 60 s), changes or not, until one succeeds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from rag.errors import RagError
from rag.ingest.ingestion import Ingestor, IngestReport

RETRY_FIRST_S, RETRY_MAX_S = 1.0, 60.0


class _Changes(FileSystemEventHandler):
    """Remembers when the last relevant change happened."""

    def __init__(self, ignored: tuple[Path, ...]) -> None:
        self.ignored = ignored
        self.last_change: float | None = None
        self.lock = threading.Lock()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in {"opened", "closed_no_write"}:
            return
        paths = [event.src_path, getattr(event, "dest_path", "")]
        if all(self._is_ignored(str(path)) for path in paths if path):
            return
        with self.lock:
            self.last_change = time.monotonic()

    def _is_ignored(self, path: str) -> bool:
        """The store's own files; everything else may matter (a sync skips hidden files)."""
        return any(Path(path).is_relative_to(folder) for folder in self.ignored)

    def take_if_quiet(self, quiet_s: float) -> bool:
        """True (once) when a change happened and nothing changed for ``quiet_s`` since."""
        with self.lock:
            if self.last_change is None or time.monotonic() - self.last_change < quiet_s:
                return False
            self.last_change = None
            return True


def watch(
    ingestor: Ingestor,
    paths: Sequence[Path],
    on_sync: Callable[[IngestReport], None],
    stop: threading.Event,
    on_error: Callable[[RagError, float], None],
) -> None:
    """Sync once, then again after each quiet spell following changes, until ``stop`` is set.

    ``on_error`` gets a failed sync's error and the seconds until the retry.
    """
    settings = ingestor.settings
    changes = _Changes((settings.chroma_path.resolve(), settings.lock_dir.resolve()))
    observer = Observer()
    for path in paths:
        folder = path if path.is_dir() else path.parent
        observer.schedule(changes, str(folder.resolve()), recursive=path.is_dir())
    observer.start()
    quiet_s = settings.ingest.watch_debounce_s
    pause = RETRY_FIRST_S
    retry_at: float | None = time.monotonic()  # the first sync, at once
    try:
        while not stop.wait(min(0.2, quiet_s or 0.2)):
            due = retry_at is not None and time.monotonic() >= retry_at
            if not (changes.take_if_quiet(quiet_s) or due):
                continue
            try:
                report = ingestor.sync(paths)
            except RagError as error:
                on_error(error, pause)
                retry_at, pause = time.monotonic() + pause, min(pause * 2, RETRY_MAX_S)
                continue
            retry_at, pause = None, RETRY_FIRST_S
            on_sync(report)
    finally:
        observer.stop()
        observer.join()
