"""``rag doctor`` against the real models and a real store."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.doctor import Report, diagnose, store_consistency
from rag.models.embeddings import Embedder
from rag.settings import load_settings
from rag.storage.store import open_store
from tests.conftest import ingest

pytestmark = pytest.mark.slow
SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def data(tmp_path: Path, embedder: Embedder) -> Path:
    data = tmp_path / "data"
    assert ingest(load_settings(data_dir=data), embedder, SAMPLE).ok
    return data


def test_doctor_reports_every_section_and_a_healthy_machine(data: Path) -> None:
    result = doctor("--data-dir", str(data))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for section in ("versions", "llama.cpp", "embedding", "workload", "store", "settings"):
        assert f"\n{section}\n" in f"\n{out}", section
    assert "system info: " in out
    assert "CPU :" in out
    assert "layers on the GPU" in out
    assert "prompt tokens/s: " in out
    assert "generated tokens/s: " in out
    assert "chunks embedded/s: " in out
    assert "expected on " in out
    for figure, low, high in re.findall(
        r"/s: ([\d,]+) \(expected on [^:]+: ([\d,]+)-([\d,]+)\)", out
    ):
        # This machine measures inside the ranges given for its kind, not past their top.
        assert (
            int(low.replace(",", "")) <= int(figure.replace(",", "")) <= int(high.replace(",", ""))
        ), out
    assert "documents: 6" in out
    assert "chunks without a file record: none" in out
    assert "keyword index: in step: " in out
    assert "file: none (defaults and environment)" in out
    assert "working: 0 failed" in out


def test_doctor_fails_on_an_orphan_chunk_and_names_it(data: Path, embedder: Embedder) -> None:
    settings = load_settings(data_dir=data)
    with open_store(settings, embedder.name) as store, store.writing():
        store.collection.add(
            ids=["stray-chunk"],
            embeddings=np.ones((1, 384), dtype=np.float32),
            documents=["left behind by a foreign write"],
            metadatas=[{"source": "ghost.txt"}],
        )
    result = doctor("--data-dir", str(data), "--no-workload", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    checks = json.loads(result.stdout)["checks"]
    failed = [c for c in checks if c["status"] == "fail"]
    assert [c["name"] for c in failed] == ["chunks without a file record"]
    assert "stray-chunk" in failed[0]["value"]
    assert not any(c["section"] == "workload" for c in checks)


def test_an_incomplete_file_and_another_embedding_model_fail(
    data: Path, embedder: Embedder
) -> None:
    settings = load_settings(data_dir=data)
    with open_store(settings, embedder.name) as store:
        first = sorted(store.ids("user-guide.md"))[0]
        with store.writing():
            store.collection.delete(ids=[first])
        names = {c.name: c for c in store_consistency(store)}
        assert names["files stored incompletely"].status == "fail"
        assert "user-guide.md" in names["files stored incompletely"].value
        # A chunk deleted behind the store's back is still in its keyword index.
        assert names["keyword index"].status == "warn"
        with store.writing():
            store.collection.modify(metadata={"embedder": "another-model"})
    report = diagnose(settings, None, embedder=embedder, workload=False)
    assert not report.ok
    assert any("another-model" in c.value and c.status == "fail" for c in report.checks)


def test_settings_in_effect_are_shown(tmp_path: Path, data: Path) -> None:
    toml = tmp_path / "mine.toml"
    toml.write_text('[retrieval]\nk = 6\n[llm.server]\napi_key = "secret-value"\n')
    result = doctor("--data-dir", str(data), "--settings", str(toml), "--no-workload")
    assert str(toml) in result.stdout
    assert "retrieval.k: 6" in result.stdout
    assert "secret-value" not in result.stdout  # a key is never printed
    assert "llm.server.api_key: (set)" in result.stdout


def test_report_text_marks_and_verdict() -> None:
    report = Report()
    report.add("store", "chunks", "3")
    report.add("store", "orphans", "1: x", "fail")
    assert not report.ok
    assert "FAIL orphans: 1: x" in report.text()
    assert report.text().endswith("broken: 1 failed, 0 warnings")


def test_a_model_that_will_not_fit_the_memory_is_a_warning(tmp_path: Path) -> None:
    fits = doctor("--data-dir", str(tmp_path / "data"), "--no-workload")
    assert re.search(r"ok +memory: the model with its context of \d+ tokens needs", fits.stdout)
    huge = subprocess.run(
        [sys.executable, "-m", "rag.cli", "doctor", "--no-workload"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "RAG_DATA_DIR": str(tmp_path / "data"), "RAG_LLM__N_CTX": "100000000"},
    )
    assert "it will not fit; choose a smaller model or set a smaller llm.n_ctx" in huge.stdout
    assert "WARN memory" in huge.stdout
