"""Regression tests for faults and hostile input: nothing lost, crashes or injected."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from rag.answering.answer import AnswerStream
from rag.cli.main import build_parser
from rag.cli.questions import evaluate_set as cli_eval
from rag.ingest.ingestion import Ingestor
from rag.models.embeddings import Embedder
from rag.models.server_llm import OpenAICompatibleLLM
from rag.pipeline import Pipeline
from rag.settings import EmbeddingSettings, load_settings
from rag.storage import connection
from rag.storage.connection import StoreError
from rag.storage.keywords import KeywordIndex
from rag.storage.records import Metadata, StoredChunk
from rag.storage.store import open_store
from tests.conftest import ROOT, SettingsFactory, ingest, run_cli
from tests.docgen import write_mixed_folder
from tests.servers import free_port, start_chroma


def test_a_mistyped_path_is_named_and_touches_nothing(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_mixed_folder(docs)
    data = str(tmp_path / "data")
    assert run_cli(str(docs), "--data-dir", data).returncode == 0

    missing = tmp_path / "dcos"
    alone = run_cli(str(missing), "--data-dir", data)
    assert alone.returncode == 2
    assert f"no such file or folder: {missing}" in alone.stderr
    assert "Traceback" not in alone.stderr
    assert "operand" not in alone.stderr

    beside = run_cli(str(docs), str(missing), "--data-dir", data)
    assert beside.returncode == 1, beside.stderr
    assert f"failed: {missing}: no such file or folder" in beside.stderr
    assert "unchanged 7" in beside.stdout
    assert "removed 0" in beside.stdout

    watched = run_cli(str(missing), "--watch", "--data-dir", data, timeout=120)
    assert watched.returncode == 2
    assert f"no such file or folder: {missing}" in watched.stderr


def test_the_same_file_named_twice_is_ingested_once(ingestor: Ingestor, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_mixed_folder(docs)
    first = sorted(docs.iterdir())[0]
    report = ingestor.sync([docs, first, docs / ".." / "docs" / first.name, first])
    assert report.ok, report.failed
    assert len(report.added) == 7
    assert ingestor.sync([docs]).unchanged == 7


def test_records_of_no_roots_is_empty(make_settings: SettingsFactory, embedder: Embedder) -> None:
    with open_store(make_settings(), embedder.name) as store:
        assert store.records([]) == {}


@pytest.mark.slow
def test_cli_same_file_twice_exits_zero(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_mixed_folder(docs)
    first = sorted(docs.iterdir())[0]
    result = run_cli(str(docs), str(first), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    assert "added 7" in result.stdout
    store = open_store(load_settings(data_dir=tmp_path / "data"), "ignored", check_embedder=False)
    assert len(store.records()) == 7


def synthetic_chunks(root: str, files: int, per_file: int, dim: int) -> list[StoredChunk]:
    """Chunks shaped as an ingest writes them, with random unit vectors (no model needed)."""
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((files * per_file, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = []
    for n in range(files * per_file):
        source, index = f"bulk/file{n // per_file:04d}.txt", n % per_file
        metadata: Metadata = {
            "root": root,
            "source": source,
            "file_type": "txt",
            "file_hash": f"hash{n // per_file}",
            "pipeline": "synthetic",
            "chunk_index": index,
            "chunk_count": per_file,
            "start_char": 0,
            "end_char": 10,
            "tokens": 5,
            "content_hash": f"content{n}",
            "headings": "",
        }
        chunks.append(StoredChunk(f"bulk{n}", f"filler text number {n}", metadata, vectors[n]))
    return chunks


@pytest.mark.slow
def test_a_store_past_33000_chunks_keeps_working(
    tmp_path: Path, embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    docs = tmp_path / "docs"
    write_mixed_folder(docs)
    settings = load_settings(data_dir=tmp_path / "data")
    bulk = synthetic_chunks(str(docs.resolve()), 340, 100, 384)
    with Pipeline(settings, embedder=embedder) as pipeline:
        store, ingestor = pipeline.store, pipeline.ingestor
        ingestor.sync([docs])
        root = str(docs.resolve())
        store.write(new_chunks=bulk)
        assert store.count() > 34_000
        assert len(store.records([root])) == 347
        assert len(store.sources()) == 347
        found = pipeline.retriever.retrieve("boiler pressure", 4)
        assert found[0].metadata["source"] == "manual.pdf"
        assert store.index.search("20000 filler", 1)[0][0] == "bulk20000"
        assert ingestor.remove(root, "bulk/file0000.txt") == 100
        report = ingestor.sync([docs])  # the bulk files are not on disk: 33,900 chunks go
        assert report.ok, report.failed
        assert (report.unchanged, len(report.removed)) == (7, 339)
        assert store.count() == sum(len(r.chunk_ids) for r in store.records().values()) < 100
        ingested = store.count()
        store.write(new_chunks=bulk)
    for file in settings.keywords_path().parent.iterdir():
        file.unlink()  # the keyword index lost: the next process rebuilds it from Chroma
    with Pipeline(settings, embedder=embedder) as rebuilt:
        assert len(rebuilt.store.index) == rebuilt.store.count() == ingested + len(bulk)
        assert "had no text" not in caplog.text
        assert rebuilt.retriever.keyword_hits("20000 filler", 1)[0][0] == "bulk20000"
        report = rebuilt.ingestor.sync([docs])  # nothing embedded again; the bulk files go
        assert report.ok, report.failed
        assert (report.unchanged, len(report.removed), report.chunks_embedded) == (7, 340, 0)
        assert report.chunks_in_store == ingested
        found = rebuilt.retriever.retrieve("boiler pressure", 4)
        assert found[0].metadata["source"] == "manual.pdf"


def test_a_chroma_failure_while_the_store_opens_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening settles a killed write by reading Chroma, which can fail (a full disk: Chroma
    must apply its log first); the user gets the store's place and what to check."""
    settings = load_settings(data_dir=tmp_path / "data")
    with open_store(settings, "test-model") as store:
        store.write(new_chunks=synthetic_chunks("/docs", 1, 2, 384))

    def failing(store: object) -> None:
        raise RuntimeError("Failed to apply logs to the metadata segment")

    monkeypatch.setattr(connection, "settle", failing)
    with pytest.raises(StoreError, match=r"cannot open the Chroma store at .*apply logs.*disk"):
        open_store(settings, "test-model")


def without_root_powers() -> list[str]:
    """A command prefix under which chmod 000 blocks reads, as it does for every user but root.

    Root keeps its uid but loses the capabilities that read through file permissions.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a folder unreadable")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


@pytest.mark.slow
def test_an_unreadable_folder_keeps_its_documents(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "top.txt").write_text("The heron nests near the old mill.\n")
    (docs / "sub" / "deep.txt").write_text("The walrus sleeps on the ice floe.\n")
    (docs / "sub" / "more.md").write_text("# Otters\n\nOtters hold hands while asleep.\n")
    command = [*without_root_powers(), sys.executable, str(ROOT / "ingest.py"), str(docs)]
    command += ["--data-dir", str(tmp_path / "data")]

    def ingest() -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)

    assert "added 3" in ingest().stdout
    (docs / "sub").chmod(0)
    try:
        blocked = ingest()
    finally:
        (docs / "sub").chmod(0o755)
    assert blocked.returncode == 1, blocked.stderr
    assert f"failed: {docs / 'sub'}: cannot read: Permission denied" in blocked.stderr
    assert "removed 0" in blocked.stdout
    again = ingest()
    assert "added 0, updated 0, removed 0, renamed 0, unchanged 3" in again.stdout


def test_keyword_search_while_another_session_writes() -> None:
    index = KeywordIndex()
    index.update((f"c{n}", f"common words of chunk {n}", {}) for n in range(5_000))
    errors: list[BaseException] = []
    done = threading.Event()

    def search() -> None:
        while not done.is_set():
            try:
                index.search("common chunk", 5)
                time.sleep(0.0005)  # a pause between questions, as people make
            except BaseException as error:
                errors.append(error)
                return

    searcher = threading.Thread(target=search)
    searcher.start()
    try:
        for n in range(1_000):  # another browser session's ingest, synced into the index
            index.update([(f"new{n}", f"common text {n}", {})], removed=[f"c{n}"])
    finally:
        done.set()
        searcher.join()
    assert not errors, errors
    assert len(index) == 5_000


@pytest.mark.slow
@pytest.mark.server
def test_a_chroma_server_killed_and_restarted(tmp_path: Path, embedder: Embedder) -> None:
    docs = tmp_path / "docs"
    write_mixed_folder(docs)
    port = free_port()
    server = start_chroma(tmp_path / "db", port)
    settings = load_settings(
        data_dir=tmp_path / "data", store={"mode": "server", "server": {"port": port}}
    )
    try:
        pipeline = Pipeline(settings, embedder=embedder)
        assert pipeline.ingestor.sync([docs]).ok
        retriever = pipeline.retriever
        assert retriever.retrieve("boiler pressure", 1)[0].metadata["source"] == "manual.pdf"
        server.kill()
        server.wait()
        with pytest.raises(StoreError, match=f"Chroma store at http://127.0.0.1:{port}.*running"):
            retriever.retrieve("boiler pressure", 1)
        with pytest.raises(StoreError, match=r"cannot (read|write)"):
            pipeline.ingestor.remove(str(docs.resolve()), "notes.txt")
        env = {"RAG_STORE__MODE": "server", "RAG_STORE__SERVER__PORT": str(port)}
        listing = run_cli("--data-dir", str(tmp_path / "data"), env=env)  # a usage error
        assert listing.returncode == 2
        search = run_rag_env(["search", "boiler pressure"], env)
        assert search.returncode == 2
        assert f"error: cannot open the Chroma store at http://127.0.0.1:{port}" in search.stderr
        assert "Traceback" not in search.stderr
        server = start_chroma(tmp_path / "db", port)
        assert retriever.retrieve("boiler pressure", 1)[0].metadata["source"] == "manual.pdf"
        assert pipeline.ingestor.sync([docs]).unchanged == 7
    finally:
        server.kill()


def run_rag_env(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **env},
    )


@pytest.mark.slow
@pytest.mark.server
def test_a_reset_by_another_process_on_a_server(
    chroma_server: tuple[str, int], tmp_path: Path, embedder: Embedder
) -> None:
    docs = tmp_path / "docs"
    write_mixed_folder(docs)
    host, port = chroma_server
    store_settings = {
        "mode": "server",
        "server": {"host": host, "port": port},
        "collection": "reset-test",
    }
    settings = load_settings(data_dir=tmp_path / "data", store=store_settings)
    app = Pipeline(settings, embedder=embedder)  # the chat app's, open all along
    app_store, retriever = app.store, app.retriever
    with Pipeline(settings, embedder=embedder) as other:
        other.ingestor.sync([docs / "notes.txt"])
        assert retriever.retrieve("heron", 1)
        other.ingestor.reset()  # `rag ingest --reset` in a terminal
        other.ingestor.sync([docs])
    assert app_store.count() == sum(len(r.chunk_ids) for r in app_store.records().values())
    assert retriever.retrieve("boiler pressure", 1)[0].metadata["source"] == "manual.pdf"


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    data_dir = tmp_path_factory.mktemp("sample-store")
    assert ingest(load_settings(data_dir=data_dir), embedder, ROOT / "data" / "sample").ok
    return data_dir


@pytest.mark.slow
def test_search_k_follows_the_setting_and_ask_prints_no_llama_log(sample_store: Path) -> None:
    env = {"RAG_DATA_DIR": str(sample_store), "RAG_RETRIEVAL__K": "5"}
    env["RAG_RETRIEVAL__MIN_SIMILARITY"] = "0"  # every chunk may come back
    search = run_rag_env(["search", "battery charge"], env)
    assert search.returncode == 0, search.stderr
    assert "5. [similarity" in search.stdout
    assert "6. [similarity" not in search.stdout
    ask = run_rag_env(["ask", "How long does a full charge take?"], env)
    assert ask.returncode == 0, ask.stderr
    assert ask.stderr == ""  # llama.cpp's own log lines ("using full-size SWA cache") stay out


def test_a_streamed_answer_is_finished_once() -> None:
    finished: list[str] = []

    def pieces() -> Generator[str, None, Any]:
        yield "four "
        yield "hours"
        finished.append("four hours")
        return "four hours"

    stream = AnswerStream(pieces())
    assert "".join(stream) == "four hours"
    assert cast(str, stream.result()) == "four hours"
    assert "".join(stream) == ""  # a second pass over a finished stream changes nothing
    assert finished == ["four hours"]


@pytest.mark.slow
def test_eval_keeps_the_callers_settings_and_refuses_an_empty_question_file(
    tmp_path: Path,
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "note.md").write_text("# Note\n\nThe kestrel hovers over the field.\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    result = run_rag_env(["eval", str(empty), "--corpus", str(corpus)], {})
    assert result.returncode == 2
    assert f"error: {empty} holds no questions" in result.stderr
    questions = tmp_path / "qa.jsonl"
    questions.write_text('{"id": "1", "question": "What hovers?", "answers": ["kestrel"]}\n')
    settings = load_settings(
        data_dir=tmp_path / "data", store={"mode": "server", "server": {"port": 9}}
    )
    args = build_parser().parse_args(["eval", str(questions), "--corpus", str(corpus)])
    assert cli_eval(args, settings) == 0
    assert settings.store.mode == "server"
    assert settings.data_dir == tmp_path / "data"


def test_store_closes_its_client_when_the_embedder_check_fails(
    tmp_path: Path, embedder: Embedder
) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    open_store(settings, "model-a").close()

    def open_store_files() -> int:
        fds = Path("/proc/self/fd")
        links = []
        for fd in fds.iterdir():
            with contextlib.suppress(OSError):  # closed since the listing
                links.append(str(fd.readlink()))
        return sum(str(settings.chroma_path) in link for link in links)

    def settled() -> int:
        """Open files once Chroma's client has let go: it closes sqlite in the background."""
        deadline = time.monotonic() + 10
        while (count := open_store_files()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return count

    assert settled() == 0
    for _ in range(3):
        with pytest.raises(StoreError, match="model-a"):
            open_store(settings, "model-b")
    assert settled() == 0


def test_two_models_with_one_config_are_told_apart(tmp_path: Path) -> None:
    from rag.models.embeddings import bundled_model_path

    first, second = tmp_path / "tuned-a" / "model", tmp_path / "tuned-b" / "model"
    shutil.copytree(bundled_model_path(), first)
    shutil.copytree(bundled_model_path(), second)
    weights = next(second.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    names = {Embedder(EmbeddingSettings(model_path=path)).name for path in (first, second)}
    assert len(names) == 2


def test_an_api_key_never_prints() -> None:
    settings = load_settings(llm={"backend": "openai", "server": {"api_key": "sk-secret-123"}})
    assert "sk-secret-123" not in repr(settings)
    assert "sk-secret-123" not in str(settings.model_dump())
    assert "sk-secret-123" not in settings.model_dump_json()
    served = OpenAICompatibleLLM(settings.llm)
    assert served.client.auth_headers == {"Authorization": "Bearer sk-secret-123"}


@pytest.mark.slow
def test_ingest_names_skipped_files_and_every_one_when_verbose(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "README").write_text("The kestrel hovers over the meadow.\n")
    for n in range(25):
        (docs / f"photo{n:02}.raw").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    data = str(tmp_path / "data")
    result = run_cli(str(docs), "--data-dir", data)
    assert result.returncode == 0, result.stderr
    assert "added 1," in result.stdout
    assert "skipped 25," in result.stdout
    named = [line for line in result.stderr.splitlines() if line.startswith("skipped: ")]
    assert named[0] == f"skipped: {docs / 'photo00.raw'}: binary (PNG image)"
    assert named[20:] == ["skipped: 5 more (--verbose names them)"]
    assert f"store: {tmp_path / 'data' / 'chroma'} (collection 'documents'" in result.stdout
    verbose = run_cli(str(docs), "--data-dir", data, "--verbose")
    named = [line for line in verbose.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(named) == 25
    assert named[-1].endswith("photo24.raw: binary (PNG image)")


@pytest.mark.slow
def test_without_a_data_dir_every_command_finds_the_users_store(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "note.md").write_text("# Note\n\nThe kestrel hovers over the meadow.\n")
    ingested = run_cli(str(docs))  # in tmp_path, which has no settings file
    assert ingested.returncode == 0, ingested.stderr
    store = tmp_path / "user-data" / "rag" / "chroma"
    assert f"store: {store} " in ingested.stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listed = subprocess.run(
        [sys.executable, "-m", "rag.cli", "sources"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "note.md" in listed.stdout
    assert str(store) in listed.stdout


def test_ingest_help_names_every_format() -> None:
    helped = run_rag_env(["ingest", "--help"], {})
    assert helped.returncode == 0
    text = " ".join(helped.stdout.split())
    for kind in ("txt", "md", "html", "pdf", "docx", "csv", "png", "jpg", "tiff", "any other name"):
        assert kind in text, kind
