"""Command line: ``rag ingest``, ``search``, ``sources``, ``ask``, ``chat``, ``eval``, ``doctor``.

Entry points only build services from settings and call them. Exit status: 0 when all went
well, 1 when some files failed (for ``doctor``: some check failed), 2 when the command could
not run (bad settings, store error), 130 when interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TextIO

from tqdm import tqdm

from rag.answering.answer import Answer, AnswerStream, Turn
from rag.answering.answerer import Answerer, AskOptions
from rag.answering.citations import QUOTED_NOTICE
from rag.documents.scanning import printable
from rag.errors import RagError
from rag.ingest.ingestion import Ingestor, IngestReport, Progress
from rag.library import list_documents
from rag.pipeline import Pipeline
from rag.retrieval.retriever import Retriever
from rag.settings import DEFAULT_WORKSPACE, Settings, load_settings

EXIT_OK, EXIT_FILES_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
SKIPPED_SHOWN = 20  # skipped files an ingest names, unless --verbose
EXIT_CHECK_FAILED = 1  # rag doctor


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
        help="folder of the store (default: $RAG_DATA_DIR, else data beside the settings file, "
        "else the user's data folder)",
    )
    common.add_argument(
        "--settings",
        type=Path,
        metavar="FILE",
        help="TOML settings file (default: $RAG_SETTINGS_FILE, else ./rag.toml if present)",
    )
    common.add_argument(
        "--workspace",
        metavar="NAME",
        help="the named set of documents to use (default: 'default', or $RAG_WORKSPACE)",
    )
    parser = argparse.ArgumentParser(
        prog="rag", description="Local, private question answering over your own documents."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser(
        "ingest",
        parents=[common],
        help="sync folders or files into the store",
        description="Load, chunk and embed documents (txt, md, html, pdf, docx, csv; png, jpg "
        "and tiff by OCR; files of any other name when they hold plain text) and bring "
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
    ingest.add_argument(
        "--create",
        action="store_true",
        help="create the workspace named by --workspace when it does not exist yet",
    )
    ingest.add_argument(
        "--verbose",
        action="store_true",
        help=f"name every skipped file (else the first {SKIPPED_SHOWN})",
    )

    search = commands.add_parser(
        "search",
        parents=[common],
        help="show the chunks that best match a query (dense and keyword search fused)",
    )
    search.add_argument("query", help="what to look for")
    search.add_argument("-k", type=int, help="how many chunks (default: retrieval.k)")

    commands.add_parser(
        "sources", parents=[common], help="list stored documents with their chunk counts"
    )

    answering = argparse.ArgumentParser(add_help=False)
    answering.add_argument("-k", type=int, help="how many chunks to retrieve (default: setting)")
    answering.add_argument(
        "--source", action="append", metavar="FILE", help="only from this stored file (repeatable)"
    )
    answering.add_argument(
        "--type", action="append", metavar="EXT", help="only from this file type (repeatable)"
    )
    ask = commands.add_parser(
        "ask",
        parents=[common, answering],
        help="answer a question from the documents, with sources",
        description="Stream an answer from the local model, grounded in the best-matching "
        "chunks, then list the sources its [n] markers point at.",
    )
    ask.add_argument("question", help="what to ask")
    ask.add_argument("--json", action="store_true", help="print one JSON object instead")
    commands.add_parser(
        "chat",
        parents=[common, answering],
        help="ask questions in a loop; follow-ups use the conversation (Ctrl-D ends)",
    )
    ui = commands.add_parser(
        "ui",
        parents=[common],
        help="start the chat app in the browser (on ui.host:ui.port, 127.0.0.1:8501 by default)",
    )
    ui.add_argument("--host", help="address to listen on (default: ui.host)")
    ui.add_argument("--port", type=int, help="port (default: ui.port)")
    doctor = commands.add_parser(
        "doctor",
        parents=[common],
        help="show what this machine does: build, GPU, speed, store consistency, settings",
        description="Report versions, how llama.cpp was built and whether it is the build this "
        "machine should run, the layers on the GPU, the embedding device, a short timed "
        "workload beside the range expected here, the store's consistency and the settings in "
        "effect. Exit status 1 when a check failed.",
    )
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    doctor.add_argument(
        "--no-workload", action="store_true", help="skip the timed workload (a few seconds)"
    )
    doctor.add_argument(
        "--repair",
        action="store_true",
        help="rebuild the keyword index from the Chroma collection first",
    )
    evaluation = commands.add_parser(
        "eval",
        parents=[common],
        help="score answers on a question set over a corpus ingested into a fresh store",
        description="Ingest CORPUS into a temporary store, ask every question of QA "
        "(JSON lines: id, question, answers, sources, answerable, optional pages) and report "
        "hit@k, MRR, accuracy, refusals, citation precision and latency; with pages, also "
        "page hit@k and cited-page precision.",
    )
    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="serve the OpenAI-compatible API (on serve.host:serve.port, 127.0.0.1:8001)",
        description="Answer over HTTP: POST /v1/chat/completions (the workspace is the model), "
        "GET /v1/models, POST /v1/search, documents under /v1/workspaces/NAME/documents; "
        "the OpenAPI page is /docs. Beyond loopback, serve.api_key is required.",
    )
    serve.add_argument("--host", help="address to listen on (default: serve.host)")
    serve.add_argument("--port", type=int, help="port (default: serve.port)")
    serve.add_argument("--workers", type=int, help="processes serving (default: serve.workers)")
    workspaces = commands.add_parser(
        "workspaces",
        parents=[common],
        help="list, create, rename or remove workspaces (separate sets of documents)",
    )
    workspaces.add_argument("--create", metavar="NAME", help="create an empty workspace")
    workspaces.add_argument(
        "--rename", nargs=2, metavar=("OLD", "NEW"), help="give a workspace another name"
    )
    workspaces.add_argument(
        "--remove", metavar="NAME", help="remove a workspace: its chunks, records and uploads"
    )
    evaluation.add_argument("questions", type=Path, metavar="QA", help="question set (.jsonl)")
    evaluation.add_argument("--corpus", type=Path, required=True, help="folder of documents")
    evaluation.add_argument("-k", type=int, help="chunks retrieved (default: setting)")
    evaluation.add_argument("--json", action="store_true", help="print figures and rows as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(
            args.settings, data_dir=args.data_dir, workspace=getattr(args, "workspace", None)
        )
        if args.command == "eval":
            return _eval(args, settings)
        if args.command == "ui":
            return _ui(settings, args)
        if args.command == "doctor":
            return _doctor(settings, args)
        if args.command == "serve":
            return _serve(settings, args)
        if args.command == "workspaces":
            return _workspaces(settings, args)
        reset = args.command == "ingest" and args.reset
        _check_workspace(settings, create=args.command == "ingest" and args.create)
        with Pipeline(settings, on_wait=_tell, check_embedder=not reset) as pipeline:
            return _run(args, pipeline)
    except RagError as error:
        _tell(f"error: {error}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _tell("interrupted: what was written is consistent; run the same command to finish")
        return EXIT_INTERRUPTED


def _check_workspace(settings: Settings, create: bool) -> None:
    """Make sure the workspace the settings name exists (``create``: make it if not).

    Raises:
        WorkspaceError: it does not exist, naming the ones that do.
    """
    if settings.workspace == DEFAULT_WORKSPACE:
        return
    from rag.workspaces import WorkspaceError, Workspaces

    served = Workspaces(settings, on_wait=_tell)
    try:
        names = served.names()
        if settings.workspace in names:
            return
        if create:
            served.create(settings.workspace)
            _tell(f"created workspace {settings.workspace!r}")
            return
        msg = (
            f"no workspace is named {settings.workspace!r}; the workspaces are: "
            f"{', '.join(names)} (`rag workspaces --create NAME` or `rag ingest --create` "
            "makes one)"
        )
        raise WorkspaceError(msg)
    finally:
        served.close()


def _run(args: argparse.Namespace, pipeline: Pipeline) -> int:
    """The commands that work on the store: ingest, search, sources, ask, chat."""
    if args.command == "ingest":
        return _ingest(args, pipeline)
    if args.command == "search":
        return _search(args.query, args.k, pipeline.retriever)
    if args.command not in ("ask", "chat"):
        return _sources(pipeline)
    if pipeline.store.count() == 0:
        _tell("the store is empty: run `python ingest.py PATH` first")
        return EXIT_ERROR
    answerer = pipeline.answerer
    options = AskOptions(k=args.k, sources=args.source, file_types=args.type)
    if args.command == "chat":
        answerer.warm_up()  # the first answer then comes as fast as the later ones
        return _chat(answerer, options)
    answerer.load()  # the answer's timings then count answering, never loading
    return _ask(answerer, args.question, options, args.json)


def _ingest(args: argparse.Namespace, pipeline: Pipeline) -> int:
    if not args.paths and not args.reset:
        _tell("error: give at least one PATH to ingest (or --reset alone to empty the store)")
        return EXIT_ERROR
    ingestor = pipeline.ingestor
    if args.reset:
        ingestor.reset()
        collection = pipeline.settings.collection_name
        _tell(f"emptied collection {collection!r} at {pipeline.store.location}")
    if not args.paths:
        return EXIT_OK
    missing = [path for path in args.paths if not os.path.lexists(path)]
    if len(missing) == len(args.paths) or (missing and args.watch):
        for path in missing:
            _tell(f"error: no such file or folder: {printable(path)}")
        return EXIT_ERROR
    if args.watch:
        return _watch(ingestor, args.paths, args.verbose)
    bars = BarProgress()
    ingestor.progress = bars
    try:
        report = ingestor.sync(args.paths)
    finally:
        bars.close()
    _print_report(report, verbose=args.verbose)
    print(f"store: {pipeline.store.location} ({_named(pipeline.settings)})")
    return EXIT_OK if report.ok else EXIT_FILES_FAILED


def _named(settings: Settings) -> str:
    return f"collection {settings.collection_name!r}, workspace {settings.workspace!r}"


def _watch(ingestor: Ingestor, paths: list[Path], verbose: bool) -> int:
    """Until Ctrl-C (exit 130, at once, even mid-sync) or SIGTERM (exit 0, as a service stops)."""
    from rag.ingest.watching import watch

    def on_terminate(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, on_terminate)
    _tell(f"watching {', '.join(map(str, paths))}; Ctrl-C stops")

    def on_sync(report: IngestReport) -> None:
        _print_report(report, verbose=verbose)
        sys.stdout.flush()

    def on_error(error: RagError, retry_s: float) -> None:
        _tell(f"error: {error}; retrying in {retry_s:.0f}s")

    try:
        watch(ingestor, paths, on_sync, threading.Event(), on_error)
    except _Terminated:
        _tell("stopped: what was written is consistent")
    return EXIT_OK


class _Terminated(Exception):
    """SIGTERM arrived: stop watching now, as a sync killed at any moment allows."""


def _print_report(report: IngestReport, out: TextIO = sys.stdout, verbose: bool = False) -> None:
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


def _search(query: str, k: int | None, retriever: Retriever) -> int:
    if retriever.store.count() == 0:
        _tell("the store is empty: run `python ingest.py PATH` first")
        return EXIT_OK
    found = retriever.retrieve(query, k)
    if not found:
        print("nothing relevant found: no chunk is above the relevance floor")
    for rank, chunk in enumerate(found, start=1):
        where = printable(chunk.metadata["source"])
        if "page" in chunk.metadata:
            where += f", page {chunk.metadata['page']}"
        if chunk.metadata.get("headings"):
            where += f" ({chunk.metadata['headings']})"
        snippet = " ".join(chunk.text.split())[:200]
        print(f"{rank}. [similarity {chunk.similarity:.2f}] {where}\n   {snippet}")
    print(f"searched {retriever.store.location}")
    return EXIT_OK


def _sources(pipeline: Pipeline) -> int:
    documents = list_documents(pipeline)
    for document in documents:
        print(f"{document.chunks:6d}  {printable(document.source)}")
    chunks = sum(document.chunks for document in documents)
    print(f"{len(documents)} documents, {chunks} chunks in {pipeline.store.location}")
    return EXIT_OK


def _ask(answerer: Answerer, question: str, options: AskOptions, as_json: bool) -> int:
    stream = answerer.stream(question, options=options)
    if as_json:
        print(json.dumps(stream.result().to_json(), ensure_ascii=False, indent=2))
        return EXIT_OK
    if _print_streamed(stream).retrieved:
        print(f"store: {answerer.retriever.store.location}")
    return EXIT_OK


def _chat(answerer: Answerer, options: AskOptions) -> int:
    history: list[Turn] = []
    store = answerer.retriever.store.location
    _tell(f"ask about your documents in {store}; an empty line starts over, Ctrl-D ends")
    while True:
        try:
            question = input("> ").strip()
        except EOFError:
            print()
            return EXIT_OK
        if not question:
            history.clear()
            _tell("(new conversation)")
            continue
        try:
            answer = _print_streamed(answerer.stream(question, history, options))
        except RagError as error:  # a store or server gone: say so, keep the conversation
            _tell(f"error: {error}")
            continue
        history.append(Turn(question, answer.text))


def _print_streamed(stream: AnswerStream) -> Answer:
    """Print the answer as it settles (every piece stands), then what to know of it, its sources."""
    for piece in stream:
        print(piece, end="", flush=True)
    answer = stream.result()
    print()
    if answer.model_text is not None:
        print(f"note: {QUOTED_NOTICE} The model wrote: {printable(answer.model_text)}")
    for warning in answer.warnings:
        print(f"warning: {warning}")
    _print_sources(answer)
    return answer


def _print_sources(answer: Answer) -> None:
    if answer.refused and not answer.retrieved:
        return
    if not answer.supported:
        print("warning: the cited sources do not hold this answer's words; check it")
    for citation in answer.citations:
        print(
            f"[{citation.number}] {printable(citation.label)}  similarity {citation.similarity:.2f}"
        )
        print(f"    {citation.snippet[:300]}")
    if not answer.citations and answer.retrieved:
        shown = ", ".join(f"[{s.number}] {printable(s.label)}" for s in answer.retrieved)
        print(f"retrieved: {shown}")
    if answer.left_out:
        print(f"left out (over the context budget): {len(answer.left_out)} chunks")


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from rag.evaluation import evaluate, load_questions

    questions = load_questions(args.questions)
    if not args.corpus.is_dir():
        _tell(f"error: corpus {args.corpus} is not a folder")
        return EXIT_ERROR
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as data_dir:
        # A fresh embedded store of its own, whatever the settings say; the caller's settings
        # stay as they were (a copy is shallow: its store block is copied too).
        embedded = settings.store.model_copy(update={"mode": "embedded"})
        settings = settings.model_copy(update={"data_dir": Path(data_dir), "store": embedded})
        with Pipeline(settings) as pipeline:
            report = pipeline.ingestor.sync([args.corpus])
            _print_report(report, out=sys.stderr)
            answerer = pipeline.answerer
            answerer.load()
            k = args.k or settings.retrieval.k
            progress = tqdm(total=len(questions), desc="questions", disable=None, file=sys.stderr)
            result = evaluate(answerer, questions, k, lambda row: progress.update(1))
            progress.close()
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
    else:
        print(result.table())
    return EXIT_OK


def _doctor(settings: Settings, args: argparse.Namespace) -> int:
    from rag.doctor import diagnose

    report = diagnose(settings, args.settings, workload=not args.no_workload, repair=args.repair)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print(report.text())
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def _ui(settings: Settings, args: argparse.Namespace) -> int:
    """Run the Streamlit app with the address, port and upload limit from the settings.

    ``--host`` and ``--port`` override ``ui.host`` and ``ui.port``.
    """
    host, port = args.host or settings.ui.host, args.port or settings.ui.port
    settings_file: Path | None = args.settings
    app = Path(__file__).resolve().parents[2] / "ui" / "app.py"
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        f"--server.address={host}",
        f"--server.port={port}",
        f"--server.maxUploadSize={settings.ui.max_upload_mb}",
        "--server.headless=true",
        "--client.toolbarMode=viewer",
        "--server.fileWatcherType=none",  # an app to use, not to develop: no reload on save
        "--runner.postScriptGC=false",  # a full collection after every answer took ~0.4 s of CPU
        "--browser.gatherUsageStats=false",
    ]
    # The app reads its settings as this command did: the data dir and a settings file named
    # on the command line travel by environment.
    environment = {**os.environ, "RAG_DATA_DIR": str(settings.data_dir.resolve())}
    if settings_file is not None:
        environment["RAG_SETTINGS_FILE"] = str(settings_file.resolve())
    if host not in LOOPBACK:
        _tell(f"warning: the chat app has no login: anyone who reaches {host}:{port} can read")
    _tell(f"chat app on http://{host}:{port} (Ctrl-C stops)")
    sys.stdout.flush()
    os.execve(sys.executable, command, environment)  # becomes the app: signals reach it


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    """Run the API until Ctrl-C or SIGTERM."""
    import uvicorn

    from rag.api.app import create_app
    from rag.workspaces import Workspaces

    host, port = args.host or settings.serve.host, args.port or settings.serve.port
    if host not in LOOPBACK and settings.serve.api_key is None:
        _tell(f"error: listening on {host} needs serve.api_key (RAG_SERVE__API_KEY)")
        return EXIT_ERROR
    workers = args.workers or settings.serve.workers
    if workers > 1:
        # Each worker builds the app itself (rag.api.app.worker_app), with the settings this
        # command read: the data dir and a settings file travel by environment.
        os.environ["RAG_DATA_DIR"] = str(settings.data_dir.resolve())
        if args.settings is not None:
            os.environ["RAG_SETTINGS_FILE"] = str(args.settings.resolve())
        _tell(f"API on http://{host}:{port}/v1 with {workers} workers (Ctrl-C stops)")
        uvicorn.run(
            "rag.api.app:worker_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
        )
        return EXIT_OK
    served = Workspaces(settings, on_wait=_tell)
    try:
        served.default.answerer.warm_up()  # the first question then comes as fast as the next
        _tell(f"API on http://{host}:{port}/v1 (OpenAPI page: /docs; Ctrl-C stops)")
        uvicorn.run(create_app(settings, served), host=host, port=port, log_level="warning")
    finally:
        served.close()
    return EXIT_OK


def _workspaces(settings: Settings, args: argparse.Namespace) -> int:
    from rag.workspaces import Workspaces

    served = Workspaces(settings, on_wait=_tell)
    try:
        if args.create:
            served.create(args.create)
        if args.rename:
            served.rename(*args.rename)
        if args.remove:
            served.remove(args.remove)
        for name in served.names():
            count = served.get(name).store.count()
            print(f"{count:6d}  {name}")
    finally:
        served.close()
    return EXIT_OK


def _tell(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
