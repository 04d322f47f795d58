"""Command line: ``rag`` and its commands (``rag --help`` lists them).

Entry points only build services from settings and call them. Exit status: 0 when all went
well, 1 when some files failed (for ``doctor``: some check failed), 2 when the command could
not run (bad settings, store error), 130 when interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rag.answering.answerer import AskOptions
from rag.cli.conversations import manage_conversations
from rag.cli.documents import SKIPPED_SHOWN, ingest, list_sources
from rag.cli.models import list_models
from rag.cli.output import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    tell,
)
from rag.cli.questions import ask, chat, evaluate_set, search
from rag.cli.servers import doctor, manage_workspaces, run_app, serve, serve_mcp
from rag.errors import RagError
from rag.models.catalog import resolve_model
from rag.pipeline import Pipeline
from rag.settings import DEFAULT_WORKSPACE, Settings, load_settings


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
        help="sync folders, files or web pages into the store",
        description="Load, chunk and embed documents (txt, md, html, pdf, docx, pptx, odt, "
        "rtf, csv, xlsx, ods, epub, eml, mbox; png, jpg and tiff by OCR; files of any other "
        "name when they hold plain text; web pages and sitemaps by URL) and bring "
        "the store exactly in line with them: new files are added, edited ones replaced, "
        "deleted ones removed, unchanged ones skipped without embedding anything.",
    )
    ingest.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="folders (synced whole, deletions included), single files, or web pages and "
        "sitemaps (http:// or https://; a sitemap is synced like a folder)",
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
    answering.add_argument(
        "--model",
        metavar="NAME|PATH",
        help="answer with this model: a GGUF file, or a name `rag models` lists",
    )
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
    chat = commands.add_parser(
        "chat",
        parents=[common, answering],
        help="ask questions in a loop; follow-ups use the conversation (Ctrl-D ends)",
        description="A conversation at the terminal, kept with the app's (`rag conversations` "
        "lists them): follow-ups use it, an empty line starts a new one.",
    )
    chat.add_argument(
        "--resume",
        nargs="?",
        const="last",
        metavar="ID",
        help="go on with the last conversation, or the one with this id",
    )
    conversations = commands.add_parser(
        "conversations",
        parents=[common],
        help="list the workspace's conversations; show, export or delete one",
    )
    chosen = conversations.add_mutually_exclusive_group()
    chosen.add_argument("--show", metavar="ID", help="print a conversation with its sources")
    chosen.add_argument("--export", metavar="ID", help="write a conversation as Markdown")
    chosen.add_argument("--delete", metavar="ID", help="delete a conversation")
    conversations.add_argument(
        "--output", "-o", metavar="FILE", help="with --export: the file (default: print it)"
    )
    commands.add_parser(
        "models",
        parents=[common],
        help="list the GGUF models on this machine (or the LLM server's), with their facts",
        description="Look for GGUF files in llm.model_dirs, the Hugging Face hub cache and LM "
        "Studio's models folder, and show each one's parameters, quantization, trained "
        "context and chat template, read from the file without loading it.",
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
    mcp = commands.add_parser(
        "mcp",
        parents=[common],
        help="serve the documents as MCP tools to assistants in other apps (stdio, or --http)",
        description="A Model Context Protocol server with the tools search, ask, "
        "list_documents, read_document and list_workspaces: over stdio for a desktop app that "
        "starts it, or over streamable HTTP (http://HOST:PORT/mcp) with --http. Beyond "
        "loopback, serve.api_key is required as a bearer token.",
    )
    mcp.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio")
    mcp.add_argument("--host", help="address to listen on with --http (default: mcp.host)")
    mcp.add_argument("--port", type=int, help="port with --http (default: mcp.port)")
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
        "--remove",
        metavar="NAME",
        help="remove a workspace: its chunks, records, uploads and conversations",
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
        if getattr(args, "model", None):
            settings = settings.model_copy(update={"llm": resolve_model(settings.llm, args.model)})
        if args.command == "models":
            return list_models(settings)
        if args.command == "eval":
            return evaluate_set(args, settings)
        if args.command == "ui":
            return run_app(settings, args)
        if args.command == "doctor":
            return doctor(settings, args)
        if args.command == "serve":
            return serve(settings, args)
        if args.command == "mcp":
            return serve_mcp(settings, args)
        if args.command == "workspaces":
            return manage_workspaces(settings, args)
        if args.command == "conversations":
            return manage_conversations(settings, args)
        reset = args.command == "ingest" and args.reset
        _check_workspace(settings, create=args.command == "ingest" and args.create)
        with Pipeline(settings, on_wait=tell, check_embedder=not reset) as pipeline:
            return _run(args, pipeline)
    except RagError as error:
        tell(f"error: {error}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        tell("interrupted: what was written is consistent; run the same command to finish")
        return EXIT_INTERRUPTED


def _check_workspace(settings: Settings, create: bool) -> None:
    """Make sure the workspace the settings name exists (``create``: make it if not).

    Raises:
        WorkspaceError: it does not exist, naming the ones that do.
    """
    if settings.workspace == DEFAULT_WORKSPACE:
        return
    from rag.workspaces import WorkspaceError, Workspaces

    served = Workspaces(settings, on_wait=tell)
    try:
        names = served.names()
        if settings.workspace in names:
            return
        if create:
            served.create(settings.workspace)
            tell(f"created workspace {settings.workspace!r}")
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
        return ingest(args, pipeline)
    if args.command == "search":
        return search(args.query, args.k, pipeline.retriever)
    if args.command not in ("ask", "chat"):
        return list_sources(pipeline)
    if pipeline.store.count() == 0:
        tell("the store is empty: run `python ingest.py PATH` first")
        return EXIT_ERROR
    answerer = pipeline.answerer
    options = AskOptions(k=args.k, sources=args.source, file_types=args.type)
    if args.command == "chat":
        answerer.warm_up()  # the first answer then comes as fast as the later ones
        return chat(answerer, options, pipeline.conversations, args.resume)
    answerer.load()  # the answer's timings then count answering, never loading
    return ask(answerer, args.question, options, args.json)
