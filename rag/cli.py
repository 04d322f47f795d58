"""Command line: ``rag ingest``, ``rag search``, ``rag sources``.

Entry points only build services from settings and call them. Exit status: 0 when all went
well, 1 when some files failed, 2 when the command could not run (bad settings, store error),
130 when interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from tqdm import tqdm

from rag.embeddings import Embedder
from rag.ingestion import Ingestor, IngestReport, Progress
from rag.locking import LockTimeoutError
from rag.retrieval import Retriever
from rag.settings import Settings, load_settings
from rag.store import ChunkStore, StoreError

EXIT_OK, EXIT_FILES_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


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


def build_parser() -> argparse.ArgumentParser:
    """All commands and options."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        help="folder of the embedded store (default: data, or $RAG_DATA_DIR)",
    )
    common.add_argument(
        "--settings",
        type=Path,
        metavar="FILE",
        help="TOML settings file (default: $RAG_SETTINGS_FILE, else ./rag.toml if present)",
    )
    parser = argparse.ArgumentParser(
        prog="rag", description="Local, private question answering over your own documents."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser(
        "ingest",
        parents=[common],
        help="sync folders or files into the store",
        description="Load, chunk and embed documents (txt, md, html, pdf, docx, csv) and bring "
        "the store exactly in line with them: new files are added, edited ones replaced, "
        "deleted ones removed, unchanged ones skipped without embedding anything.",
    )
    ingest.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="folders (synced whole, deletions included) or single files",
    )
    ingest.add_argument(
        "--watch", action="store_true", help="keep syncing as files change, until Ctrl-C"
    )
    ingest.add_argument(
        "--reset", action="store_true", help="empty the collection first (alone: just empty it)"
    )

    search = commands.add_parser(
        "search",
        parents=[common],
        help="show the chunks that best match a query (dense and keyword search fused)",
    )
    search.add_argument("query", help="what to look for")
    search.add_argument("-k", type=int, default=4, help="how many chunks (default 4)")

    commands.add_parser(
        "sources", parents=[common], help="list stored documents with their chunk counts"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.settings, data_dir=args.data_dir)
        embedder = Embedder(settings.embedding)
        reset = args.command == "ingest" and args.reset
        store = ChunkStore(settings, embedder.name, on_wait=_tell, check_embedder=not reset)
        if args.command == "ingest":
            return _ingest(args, settings, store, embedder)
        if args.command == "search":
            return _search(args.query, args.k, Retriever(settings.retrieval, store, embedder))
        return _sources(store)
    except (StoreError, LockTimeoutError, FileNotFoundError, ValueError) as error:
        _tell(f"error: {error}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _tell("interrupted: what was written is consistent; run the same command to finish")
        return EXIT_INTERRUPTED


def _ingest(
    args: argparse.Namespace, settings: Settings, store: ChunkStore, embedder: Embedder
) -> int:
    if not args.paths and not args.reset:
        _tell("error: give at least one PATH to ingest (or --reset alone to empty the store)")
        return EXIT_ERROR
    ingestor = Ingestor(settings, store, embedder)
    if args.reset:
        ingestor.reset()
        _tell(f"emptied collection {settings.store.collection!r} at {store.location}")
    if not args.paths:
        return EXIT_OK
    if args.watch:
        return _watch(ingestor, args.paths)
    bars = BarProgress()
    ingestor.progress = bars
    try:
        report = ingestor.sync(args.paths)
    finally:
        bars.close()
    _print_report(report)
    return EXIT_OK if report.ok else EXIT_FILES_FAILED


def _watch(ingestor: Ingestor, paths: list[Path]) -> int:
    from rag.watching import watch

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _tell(f"watching {', '.join(map(str, paths))}; Ctrl-C stops")

    def on_sync(report: IngestReport) -> None:
        _print_report(report)
        sys.stdout.flush()

    watch(ingestor, paths, on_sync, stop)
    return EXIT_OK


def _print_report(report: IngestReport) -> None:
    stamp = time.strftime("%H:%M:%S")
    for path, reason in report.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    for old, new in report.renamed:
        print(f"renamed: {old} -> {new}")
    print(f"[{stamp}] {report.summary()}", flush=True)


def _search(query: str, k: int, retriever: Retriever) -> int:
    if retriever.store.count() == 0:
        _tell("the store is empty: run `python ingest.py PATH` first")
        return EXIT_OK
    found = retriever.retrieve(query, k)
    if not found:
        print("nothing relevant found: no chunk is above the relevance floor")
    for rank, chunk in enumerate(found, start=1):
        where = str(chunk.metadata["source"])
        if "page" in chunk.metadata:
            where += f", page {chunk.metadata['page']}"
        if chunk.metadata.get("headings"):
            where += f" ({chunk.metadata['headings']})"
        snippet = " ".join(chunk.text.split())[:200]
        print(f"{rank}. [similarity {chunk.similarity:.2f}] {where}\n   {snippet}")
    return EXIT_OK


def _sources(store: ChunkStore) -> int:
    sources = store.sources()
    for source, chunks in sources.items():
        print(f"{chunks:6d}  {source}")
    print(f"{len(sources)} documents, {sum(sources.values())} chunks in {store.location}")
    return EXIT_OK


def _tell(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
