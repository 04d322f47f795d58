"""Fixtures: real embedding model, real Chroma (embedded and server), throwaway data dirs."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.ingest.ingestion import Ingestor, IngestReport
from rag.models.embeddings import Embedder
from rag.pipeline import Pipeline
from rag.settings import EmbeddingSettings, Settings, load_settings
from tests.servers import free_port, start_chroma, start_llama_server

ROOT = Path(__file__).resolve().parent.parent
SHARED_EVAL = ROOT.parent / "shared" / "eval" / "pydoc"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the user's settings or writes to the project's data dir."""
    for name in list(os.environ):
        if name.startswith("RAG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "user-data"))  # the default store's home
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The bundled all-MiniLM-L6-v2, loaded once."""
    return Embedder(EmbeddingSettings())


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real ``chroma run`` on 127.0.0.1, for the whole session."""
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    process = start_chroma(path / "db", port, path / "server.log")
    yield "127.0.0.1", port
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``python -m llama_cpp.server`` with the bundled model on 127.0.0.1."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    server = start_llama_server(port, log_path, "--n_ctx", "2048")
    yield f"http://127.0.0.1:{port}/v1"
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
            store |= {"server": {"host": host, "port": port}}
        store |= overrides.pop("store", {})
        return load_settings(**{"data_dir": tmp_path / "data", "store": store, **overrides})

    return make


@pytest.fixture
def pipeline(make_settings: SettingsFactory, embedder: Embedder) -> Iterator[Pipeline]:
    """The pipeline over a fresh store, with the real embedding model."""
    with Pipeline(make_settings(), embedder=embedder) as built:
        yield built


@pytest.fixture
def ingestor(pipeline: Pipeline) -> Ingestor:
    """An ingestor over a fresh store, with the real model."""
    return pipeline.ingestor


def ingest(settings: Settings, embedder: Embedder, *paths: Path) -> IngestReport:
    """Ingest ``paths`` into the store the settings name, through the pipeline, then close it."""
    with Pipeline(settings, embedder=embedder) as pipeline:
        return pipeline.ingestor.sync(list(paths))


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
