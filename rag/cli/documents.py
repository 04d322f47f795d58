"""``rag ingest`` (and ``--watch``) and ``rag sources``: the store's documents from a terminal."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TextIO

from tqdm import tqdm

from rag.cli.output import (
    EXIT_ERROR,
    EXIT_FILES_FAILED,
    EXIT_OK,
    tell,
)
from rag.documents.scanning import printable
from rag.errors import RagError
from rag.ingest.ingestion import Ingestor, IngestReport, Progress
from rag.library import counted, list_documents
from rag.pipeline import Pipeline
from rag.settings import Settings
from rag.web.fetching import checked_url

SKIPPED_SHOWN = 20  # skipped files an ingest names, unless --verbose


class BarProgress(Progress):
    """Two progress bars on stderr: files looked at, chunks embedded."""

    def __init__(self) -> None:
        self.files = tqdm(total=0, desc="files", unit="file", disable=None, position=0)
        self.chunks = tqdm(total=0, desc="chunks", unit="chunk", disable=None, position=1)

    def files_total(self, count: int) -> None:
        """Set the file bar's total."""
        self.files.reset(total=count)

    def file_done(self) -> None:
        """Advance the file bar."""
        self.files.update(1)

    def chunks_total(self, count: int) -> None:
        """Grow the chunk bar's total."""
        self.chunks.total = (self.chunks.total or 0) + count
        self.chunks.refresh()

    def chunks_done(self, count: int) -> None:
        """Advance the chunk bar."""
        self.chunks.update(count)

    def close(self) -> None:
        """Remove the bars."""
        self.chunks.close()
        self.files.close()


def ingest(args: argparse.Namespace, pipeline: Pipeline) -> int:
    """Sync the given paths and URLs into the store (or --reset it, or --watch paths)."""
    if not args.paths and not args.reset:
        tell("error: give at least one PATH to ingest (or --reset alone to empty the store)")
        return EXIT_ERROR
    ingestor = pipeline.ingestor
    if args.reset:
        ingestor.reset()
        collection = pipeline.settings.collection_name
        tell(f"emptied collection {collection!r} at {pipeline.store.location}")
    if not args.paths:
        return EXIT_OK
    urls = [given for given in args.paths if _ADDRESS.match(given)]
    paths = [Path(given) for given in args.paths if not _ADDRESS.match(given)]
    missing = [path for path in paths if not os.path.lexists(path)]
    if len(missing) == len(args.paths) or (missing and args.watch):
        for path in missing:
            tell(f"error: no such file or folder: {printable(path)}")
        return EXIT_ERROR
    if args.watch:
        if urls:
            tell("error: --watch follows folders and files; ingest web pages again to update them")
            return EXIT_ERROR
        return _watch(ingestor, paths, args.verbose)
    for url in urls:
        checked_url(url)  # another scheme is an error before anything is done
    bars = BarProgress()
    ingestor.progress = bars
    try:
        report = ingestor.sync(paths) if paths else IngestReport()
        if urls:
            report.include(ingestor.sync_web(urls))
    finally:
        bars.close()
    print_report(report, verbose=args.verbose)
    print(f"store: {pipeline.store.location} ({_store_named(pipeline.settings)})")
    return EXIT_OK if report.ok else EXIT_FILES_FAILED


_ADDRESS = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # a URL, not a path


def _store_named(settings: Settings) -> str:
    return f"collection {settings.collection_name!r}, workspace {settings.workspace!r}"


def _watch(ingestor: Ingestor, paths: list[Path], verbose: bool) -> int:
    """Until Ctrl-C (exit 130, at once, even mid-sync) or SIGTERM (exit 0, as a service stops)."""
    from rag.ingest.watching import watch

    def on_terminate(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, on_terminate)
    tell(f"watching {', '.join(map(str, paths))}; Ctrl-C stops")

    def on_sync(report: IngestReport) -> None:
        print_report(report, verbose=verbose)
        sys.stdout.flush()

    def on_error(error: RagError, retry_s: float) -> None:
        tell(f"error: {error}; retrying in {retry_s:.0f}s")

    try:
        watch(ingestor, paths, on_sync, threading.Event(), on_error)
    except _Terminated:
        tell("stopped: what was written is consistent")
    return EXIT_OK


class _Terminated(Exception):
    """SIGTERM arrived: stop watching now, as a sync killed at any moment allows."""


def print_report(report: IngestReport, out: TextIO = sys.stdout, verbose: bool = False) -> None:
    """Failures, notes and skipped files to stderr; renames and the summary to ``out``.

    ``out`` is stderr where stdout is data. Past 20 skipped files, the rest are counted,
    unless ``verbose``.
    """
    stamp = time.strftime("%H:%M:%S")
    for path, reason in report.failed:
        print(f"failed: {printable(path)}: {reason}", file=sys.stderr)
    for path, note in report.notes:
        print(f"note: {printable(path)}: {note}", file=sys.stderr)
    shown = report.skipped if verbose else report.skipped[:SKIPPED_SHOWN]
    for path, reason in shown:
        print(f"skipped: {printable(path)}: {reason}", file=sys.stderr)
    if len(shown) < len(report.skipped):
        more = len(report.skipped) - len(shown)
        print(f"skipped: {more} more (--verbose names them)", file=sys.stderr)
    for old, new in report.renamed:
        print(f"renamed: {printable(old)} -> {printable(new)}", file=out)
    print(f"[{stamp}] {report.summary()}", file=out, flush=True)


def list_sources(pipeline: Pipeline) -> int:
    """Print every stored document with its chunk count."""
    documents = list_documents(pipeline)
    for document in documents:
        print(f"{document.chunks:6d}  {printable(document.source)}")
    chunks = sum(document.chunks for document in documents)
    sizes = f"{counted(len(documents), 'document')}, {counted(chunks, 'chunk')}"
    print(f"{sizes} in {pipeline.store.location}")
    return EXIT_OK
