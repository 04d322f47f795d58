"""Real servers on 127.0.0.1 for the tests and the fault bench: Chroma and llama.cpp's.

Each start waits until the server answers, and fails with the end of its log if it dies or
takes longer than two minutes.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx

from rag.models.embeddings import Embedder
from rag.models.llm import bundled_gguf_path
from rag.settings import load_settings
from rag.workspaces import Workspaces

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_store_environment(server: tuple[str, int], collection: str) -> dict[str, str]:
    """The RAG_ variables that put a process's store in ``collection`` on a Chroma server."""
    host, port = server
    return {
        "RAG_STORE__MODE": "server",
        "RAG_STORE__SERVER__HOST": host,
        "RAG_STORE__SERVER__PORT": str(port),
        "RAG_STORE__COLLECTION": collection,
    }


def wait_until_serving(
    url: str,
    ready: Callable[[httpx.Response], bool],
    process: subprocess.Popen[Any],
    log_path: Path | None,
) -> None:
    """Poll ``url`` until ``ready``; raise with the log's end if the process dies or 2 min pass."""
    deadline = time.monotonic() + 120
    while True:
        try:
            if ready(httpx.get(url, timeout=2)):
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log = log_path.read_text()[-2000:] if log_path and log_path.exists() else ""
            msg = f"{process.args!r} did not start: {log}"
            raise RuntimeError(msg)
        time.sleep(0.3)


def start_chroma(path: Path, port: int, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """``chroma run`` storing under ``path``, serving on 127.0.0.1:port."""
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
    command = [chroma, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)]
    process = _start(command, log_path)
    url = f"http://127.0.0.1:{port}/api/v2/heartbeat"
    wait_until_serving(url, lambda r: r.status_code == 200, process, log_path)
    return process


def start_llama_server(
    port: int, log_path: Path | None = None, *options: str
) -> subprocess.Popen[bytes]:
    """``python -m llama_cpp.server`` with the bundled model on 127.0.0.1:port."""
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_gguf_path())]
    command += ["--host", "127.0.0.1", "--port", str(port), *options]
    process = _start(command, log_path)
    url = f"http://127.0.0.1:{port}/v1/models"
    wait_until_serving(url, lambda r: r.status_code == 200, process, log_path)
    return process


KESTREL_NOTE = "# Kestrels\n\nThe kestrel hovers over the meadow, then drops onto voles.\n"


def store_two_workspaces(folder: Path, embedder: Embedder) -> Path:
    """A data dir under ``folder``: the samples in 'default', a note on kestrels in 'birds'."""
    birds = folder / "birds"
    birds.mkdir()
    (birds / "kestrel.md").write_text(KESTREL_NOTE)
    served = Workspaces(load_settings(data_dir=folder / "data"), embedder=embedder)
    try:
        assert served.default.ingestor.sync([SAMPLE]).ok
        assert served.create("birds").ingestor.sync([birds]).ok
    finally:
        served.close()
    return folder / "data"


def start_rag_serve(
    port: int, log_path: Path | None, env: dict[str, str], *options: str
) -> subprocess.Popen[bytes]:
    """``rag serve`` on 127.0.0.1:port, with ``env`` added to this process's environment."""
    command = [sys.executable, "-m", "rag.cli", "serve", "--port", str(port), *options]
    process = _start(command, log_path, {**os.environ, **env})
    url = f"http://127.0.0.1:{port}/health"
    wait_until_serving(url, lambda r: r.status_code == 200, process, log_path)
    return process


def _start(
    command: list[str], log_path: Path | None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log: IO[Any] | int = log_path.open("w") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    finally:
        if not isinstance(log, int):
            log.close()  # the child keeps its own descriptor
