"""``rag ui``, ``rag serve``, ``rag doctor`` and ``rag workspaces``: the servers and the checks."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rag.cli.output import (
    EXIT_CHECK_FAILED,
    EXIT_ERROR,
    EXIT_OK,
    tell,
)
from rag.settings import Settings

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def doctor(settings: Settings, args: argparse.Namespace) -> int:
    """Print the machine check; exit 1 when a check failed."""
    from rag.doctor import diagnose

    report = diagnose(settings, args.settings, workload=not args.no_workload, repair=args.repair)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print(report.text())
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def run_app(settings: Settings, args: argparse.Namespace) -> int:
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
        tell(f"warning: the chat app has no login: anyone who reaches {host}:{port} can read")
    tell(f"chat app on http://{host}:{port} (Ctrl-C stops)")
    sys.stdout.flush()
    os.execve(sys.executable, command, environment)  # becomes the app: signals reach it


def serve(settings: Settings, args: argparse.Namespace) -> int:
    """Run the API until Ctrl-C or SIGTERM."""
    import uvicorn

    from rag.api.app import create_app
    from rag.workspaces import Workspaces

    host, port = args.host or settings.serve.host, args.port or settings.serve.port
    if host not in LOOPBACK and settings.serve.api_key is None:
        tell(f"error: listening on {host} needs serve.api_key (RAG_SERVE__API_KEY)")
        return EXIT_ERROR
    workers = args.workers or settings.serve.workers
    if workers > 1:
        # Each worker builds the app itself (rag.api.app.worker_app), with the settings this
        # command read: the data dir and a settings file travel by environment.
        os.environ["RAG_DATA_DIR"] = str(settings.data_dir.resolve())
        if args.settings is not None:
            os.environ["RAG_SETTINGS_FILE"] = str(args.settings.resolve())
        tell(f"API on http://{host}:{port}/v1 with {workers} workers (Ctrl-C stops)")
        uvicorn.run(
            "rag.api.app:worker_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
        )
        return EXIT_OK
    served = Workspaces(settings, on_wait=tell)
    try:
        served.default.answerer.warm_up()  # the first question then comes as fast as the next
        tell(f"API on http://{host}:{port}/v1 (OpenAPI page: /docs; Ctrl-C stops)")
        uvicorn.run(create_app(settings, served), host=host, port=port, log_level="warning")
    finally:
        served.close()
    return EXIT_OK


def serve_mcp(settings: Settings, args: argparse.Namespace) -> int:
    """Serve the MCP tools over stdio, or over streamable HTTP with ``--http``, until stopped."""
    import uvicorn

    from rag.mcp_server import build_server, requiring_key
    from rag.workspaces import Workspaces

    host, port = args.host or settings.mcp.host, args.port or settings.mcp.port
    key = settings.serve.api_key
    if args.http and host not in LOOPBACK and key is None:
        tell(f"error: listening on {host} needs serve.api_key (RAG_SERVE__API_KEY)")
        return EXIT_ERROR
    served = Workspaces(settings, on_wait=tell)
    try:
        server = build_server(served)
        if not args.http:
            server.run("stdio")  # stdout is the protocol's: the rest goes to stderr
            return EXIT_OK
        app = server.streamable_http_app(host=host)
        guarded = app if key is None else requiring_key(app, key.get_secret_value())
        tell(f"MCP server on http://{host}:{port}/mcp (Ctrl-C stops)")
        uvicorn.run(guarded, host=host, port=port, log_level="warning")
    finally:
        served.close()
    return EXIT_OK


def manage_workspaces(settings: Settings, args: argparse.Namespace) -> int:
    """Create, rename, remove or list the workspaces."""
    from rag.workspaces import Workspaces

    served = Workspaces(settings, on_wait=tell)
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
