"""Fixtures: real embedding model, real Chroma (embedded and server), throwaway data dirs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.embeddings import Embedder
from rag.ingestion import Ingestor
from rag.llm import bundled_gguf_path
from rag.settings import EmbeddingSettings, Settings, load_settings
from rag.store import ChunkStore

ROOT = Path(__file__).resolve().parent.parent
SHARED_EVAL = ROOT.parent / "shared" / "eval" / "pydoc"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the user's settings or writes to the project's data dir."""
    for name in list(os.environ):
        if name.startswith("RAG_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The bundled all-MiniLM-L6-v2, loaded once."""
    return Embedder(EmbeddingSettings())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real ``chroma run`` on 127.0.0.1, for the whole session."""
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
    log = (path / "server.log").open("w")
    process = subprocess.Popen(
        [chroma, "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"chroma server did not start: {(path / 'server.log').read_text()}")
            time.sleep(0.2)
    yield "127.0.0.1", port
    process.terminate()
    process.wait(timeout=30)
    log.close()


def wait_until_serving(
    url: str,
    ready: Callable[[httpx.Response], bool],
    process: subprocess.Popen[bytes],
    log_path: Path,
) -> None:
    """Poll ``url`` until ``ready``; fail with the log's end if the process dies or 2 min pass."""
    deadline = time.monotonic() + 120
    while True:
        try:
            if ready(httpx.get(url, timeout=2)):
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{process.args!r} did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.3)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``python -m llama_cpp.server`` with the bundled model on 127.0.0.1."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(bundled_gguf_path()),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{port}/v1"
        wait_until_serving(f"{base_url}/models", lambda r: r.status_code == 200, server, log_path)
        yield base_url
        server.terminate()
        server.wait(timeout=30)


SettingsFactory = Callable[..., Settings]


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def make_settings(request: pytest.FixtureRequest, tmp_path: Path) -> SettingsFactory:
    """Settings for a fresh store, embedded in tmp_path or a new collection on the server."""
    mode = request.param
    collection = f"test-{uuid.uuid4().hex[:12]}"

    def make(**overrides: Any) -> Settings:
        store: dict[str, Any] = {"mode": mode, "collection": collection}
        if mode == "server":
            host, port = request.getfixturevalue("chroma_server")
            store |= {"host": host, "port": port}
        store |= overrides.pop("store", {})
        return load_settings(**{"data_dir": tmp_path / "data", "store": store, **overrides})

    return make


@pytest.fixture
def ingestor(make_settings: SettingsFactory, embedder: Embedder) -> Ingestor:
    """An ingestor over a fresh store, with the real model."""
    settings = make_settings()
    return Ingestor(settings, ChunkStore(settings, embedder.name), embedder)


def run_rag(
    *args: str, timeout: float = 300, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``rag ARGS`` (``python -m rag.cli``) in a new process."""
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        check=False,
    )


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python ingest.py ARGS`` in a new process."""
    return subprocess.run(
        [sys.executable, str(ROOT / "ingest.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
