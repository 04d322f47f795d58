"""The CLI as separate processes: killed mid-run, run three at once, read while writing, watch."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rag.models.embeddings import Embedder
from rag.settings import load_settings
from rag.storage.locking import StoreLock
from rag.storage.store import open_store
from tests.conftest import ROOT, run_cli
from tests.docgen import paragraphs, write_mixed_folder

pytestmark = pytest.mark.slow


def write_corpus(folder: Path, files: int = 40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(files):
        body = "\n\n".join(paragraphs(f"topic {n}", 8))
        (folder / f"doc{n:02d}.md").write_text(f"# Document {n}\n\n{body}\n")
    return folder


def store_state(data_dir: Path, embedder: Embedder) -> tuple[int, set[str]]:
    store = open_store(load_settings(data_dir=data_dir), embedder.name)
    ids = set(store.collection.get(include=[])["ids"])
    return store.count(), ids


def ingest_process(
    *args: str, env: dict[str, str] | None = None, job: bool = False
) -> subprocess.Popen[str]:
    """``ingest.py ARGS``; with ``job``, in a process group of its own, as a shell's job."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "ingest.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        preexec_fn=_as_a_job if job else _sigint_as_in_a_terminal,
    )


def _sigint_as_in_a_terminal() -> None:
    """Ctrl-C's default action in the child, even when the suite runs in the background.

    A shell starts a background job with SIGINT ignored, and an ignored signal stays ignored
    across exec: the ingest would then never see the Ctrl-C this file sends it.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _as_a_job() -> None:
    """A process group of its own, which Ctrl-C reaches whole (every process the ingest ran)."""
    _sigint_as_in_a_terminal()
    os.setpgid(0, 0)


def test_help_explains_every_option() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for option in ("--watch", "--reset", "--data-dir", "--settings", "PATH"):
        assert option in result.stdout


def test_exit_status_and_summary(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_mixed_folder(docs)
    result = run_cli(str(docs), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    assert "added 7, updated 0, removed 0, renamed 0, unchanged 0, skipped 0, failed 0" in (
        result.stdout
    )

    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 not a pdf")
    result = run_cli(str(docs), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 1
    assert f"failed: {docs / 'broken.pdf'}: cannot parse .pdf file" in result.stderr
    assert "unchanged 7, skipped 0, failed 1; chunks embedded 0" in result.stdout

    assert run_cli("--data-dir", str(tmp_path / "data")).returncode == 2
    search = subprocess.run(
        [sys.executable, "-m", "rag.cli", "search", "boiler pressure", "-k", "1"],
        capture_output=True,
        text=True,
        env={**os.environ, "RAG_DATA_DIR": str(tmp_path / "data")},
        check=True,
    )
    assert "manual.pdf, page 2" in search.stdout


def wait_for_writes(data_dir: Path, count: int, process: subprocess.Popen[str]) -> None:
    """Return once the store has taken ``count`` writes (its generation number)."""
    generation = data_dir / "chroma.lock" / "generation"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if generation.exists() and int(generation.read_text() or 0) >= count:
            return
        time.sleep(0.01)
    raise AssertionError(f"the ingest ended or stalled before write {count}")


def test_killed_ingest_then_rerun_equals_clean_ingest(tmp_path: Path, embedder: Embedder) -> None:
    docs = write_corpus(tmp_path / "docs")
    small_groups = {"RAG_INGEST__GROUP_CHUNKS": "8"}
    killed_dir = tmp_path / "killed"
    for writes in (2, 5, 9):  # killed mid-run three times, each time further along
        process = ingest_process(str(docs), "--data-dir", str(killed_dir), env=small_groups)
        wait_for_writes(killed_dir, writes, process)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        assert process.returncode == -signal.SIGKILL
        # Whatever moment it died at, the store opens and every stored file is complete.
        store = open_store(load_settings(data_dir=killed_dir), embedder.name)
        for record in store.records().values():
            (file_hash, pipeline), *others = record.versions
            assert not others
            assert record.holds(file_hash, pipeline), record
        del store
    resumed = run_cli(str(docs), "--data-dir", str(killed_dir), env=small_groups)
    assert resumed.returncode == 0, resumed.stderr
    unchanged = int(resumed.stdout.split("unchanged ")[1].split(",")[0])
    assert 0 < unchanged < 40, resumed.stdout  # kept what the killed runs finished, did the rest
    clean = run_cli(str(docs), "--data-dir", str(tmp_path / "clean"))
    assert clean.returncode == 0, clean.stderr
    assert store_state(killed_dir, embedder) == store_state(tmp_path / "clean", embedder)


def test_three_ingests_at_once_finish_and_leave_a_readable_store(
    tmp_path: Path, embedder: Embedder
) -> None:
    docs = write_corpus(tmp_path / "docs", files=20)
    data = tmp_path / "data"
    processes = [
        ingest_process(str(docs), "--data-dir", str(data), env={"RAG_INGEST__GROUP_CHUNKS": "8"})
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    # Exactly one run embedded; the others waited, then found everything unchanged.
    summaries = [out for out, _ in outputs]
    assert sum("unchanged 20" in s for s in summaries) == 2, summaries
    listing = run_cli_sources(data)
    assert "20 documents" in listing
    clean = run_cli(str(docs), "--data-dir", str(tmp_path / "clean"))
    assert clean.returncode == 0
    assert store_state(data, embedder) == store_state(tmp_path / "clean", embedder)


def run_cli_sources(data: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "rag.cli", "sources", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def test_reader_sees_whole_files_and_fresh_results_during_ingest(
    tmp_path: Path, embedder: Embedder
) -> None:
    docs = write_corpus(tmp_path / "docs")
    data = tmp_path / "data"
    reader = open_store(load_settings(data_dir=data), embedder.name)
    # Files are ingested in name order: this one is written last.
    (docs / "zz-last.md").write_text(
        "# Volcanoes\n\nThe volcano erupted, and lava reached the sea.\n"
    )
    process = ingest_process(
        str(docs), "--data-dir", str(data), env={"RAG_INGEST__GROUP_CHUNKS": "8"}
    )
    query = embedder.embed(["When did lava from the volcano reach the sea?"])[0]
    seen_counts = []
    while process.poll() is None:
        for record in reader.records().values():
            (file_hash, pipeline), *others = record.versions
            assert not others
            assert record.holds(file_hash, pipeline), record
        if reader.count():
            assert reader.query(query, 3)
        seen_counts.append(reader.count())
        time.sleep(0.05)
    assert process.returncode == 0, process.communicate()
    assert len(set(seen_counts)) > 2, "the reader should have watched the store grow"
    top = reader.query(query, 1)[0]
    assert top.metadata["source"] == "zz-last.md"  # the reader's vector index is fresh
    assert reader.count() == store_state(data, embedder)[0]


def test_watch_follows_create_edit_move_delete(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_mixed_folder(docs)
    process = ingest_process(
        str(docs),
        "--watch",
        "--data-dir",
        str(tmp_path / "data"),
        env={"RAG_INGEST__WATCH_DEBOUNCE_S": "0.3"},
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()

    def wait_for(expected: str) -> str:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if expected in line:
                return line
        raise AssertionError(f"no line with {expected!r}")

    try:
        wait_for("added 7,")
        (docs / "new.md").write_text("# New\n\nA new note about kestrels.\n")
        wait_for("added 1, updated 0, removed 0, renamed 0")
        (docs / "new.md").write_text("# New\n\nAn edited note about falcons.\n")
        wait_for("added 0, updated 1, removed 0")
        (docs / "new.md").rename(docs / "sub" / "moved.md")
        wait_for("renamed 1")
        (docs / "guide.md").unlink()
        wait_for("added 0, updated 0, removed 1, renamed 0")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert process.returncode == 0


@pytest.mark.parametrize("embedding_process", ["this", "own"])
def test_ctrl_c_stops_cleanly_and_a_rerun_finishes(
    tmp_path: Path, embedder: Embedder, embedding_process: str
) -> None:
    """Ctrl-C reaches the whole job, as a terminal sends it: the model's own process too."""
    docs = write_corpus(tmp_path / "docs", files=20)
    data = tmp_path / "data"
    process = ingest_process(
        str(docs),
        "--data-dir",
        str(data),
        env={
            "RAG_INGEST__GROUP_CHUNKS": "8",
            "RAG_INGEST__EMBEDDING_PROCESS": embedding_process,
        },
        job=True,
    )
    wait_for_writes(data, 2, process)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted: what was written is consistent" in stderr
    assert "Traceback" not in stderr
    rerun = run_cli(str(docs), "--data-dir", str(data))
    assert rerun.returncode == 0, rerun.stderr
    assert "failed 0" in rerun.stdout
    assert "added 0" not in rerun.stdout  # the interrupted run left work to finish


def test_watch_survives_store_errors_and_ctrl_c_stops_it_at_once(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_mixed_folder(docs)
    data = tmp_path / "data"
    lock = StoreLock(load_settings(data_dir=data).lock_dir, 60)
    held = lock.writer()
    held.__enter__()  # another ingest holds the store: the watcher's first sync cannot write
    process = ingest_process(
        str(docs),
        "--watch",
        "--data-dir",
        str(data),
        env={"RAG_INGEST__WATCH_DEBOUNCE_S": "0.3", "RAG_STORE__EMBEDDED__LOCK_TIMEOUT_S": "2"},
    )
    output = Lines(process)
    try:
        output.wait_for("gave up after 2s")
        output.wait_for("retrying in")
        held.__exit__(None, None, None)
        output.wait_for("added 7,")  # the retry, with no file changed
        held = lock.writer()
        held.__enter__()
        (docs / "new.md").write_text("# New\n\nA note about kestrels.\n")
        output.wait_for("another ingest is writing to the store")
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        assert time.monotonic() - started < 5
    finally:
        held.__exit__(None, None, None)
        process.kill()
    assert process.returncode == 130
    output.wait_for("interrupted")


class Lines:
    """A process's stdout and stderr lines, read as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        for stream in (process.stdout, process.stderr):
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, expected: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if expected in line:
                return line
        raise AssertionError(f"no line with {expected!r}")
