"""``rag serve`` as clients no one here wrote see it: the official openai client, LangChain's
ChatOpenAI and plain HTTP, against the real server with the bundled models."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from rag.answering.answer import AnswerStream
from rag.api.chat import Gate, Generation
from rag.models.embeddings import Embedder
from tests.conftest import ROOT
from tests.servers import (
    free_port,
    server_store_environment,
    start_rag_serve,
    store_two_workspaces,
)

pytestmark = pytest.mark.slow

SAMPLE = ROOT / "data" / "sample"
KEY = "test-key-7f3a"
CHARGE = "How long does a full charge of the battery take?"
KESTREL = "What does the kestrel do over the meadow?"
SERVE_LOG: dict[str, Path] = {}  # the server's output, by its URL


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[str]:
    """A real ``rag serve`` over two workspaces: the sample (default) and 'birds'."""
    folder = tmp_path_factory.mktemp("api")
    store_two_workspaces(folder, embedder)
    port = free_port()
    env = {"RAG_DATA_DIR": str(folder / "data"), "RAG_SERVE__API_KEY": KEY}
    env["RAG_SERVE__MAX_QUEUE"] = "1"
    # Beyond loopback, so every request below meets the key check as a remote one would.
    process = start_rag_serve(port, folder / "serve.log", env, "--host", "0.0.0.0")
    url = f"http://127.0.0.1:{port}"
    SERVE_LOG[url] = folder / "serve.log"
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


def test_the_official_client_gets_answers_with_citations(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["default", "birds"]
    whole = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": CHARGE}]
    )
    text = whole.choices[0].message.content or ""
    assert "4.5 hours" in text
    assert "[1]" in text
    extra = whole.model_extra or {}
    assert extra["refused"] is False
    assert extra["citations"][0]["source"] == "user-guide.md"
    assert "4.5 hours" in extra["citations"][0]["snippet"]

    events = list(
        client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": CHARGE}], stream=True
        )
    )
    pieces = [e.choices[0].delta.content for e in events if e.choices and e.choices[0].delta]
    final = events[-1]
    assert final.choices[0].finish_reason == "stop"
    assert (final.model_extra or {})["answer"] == text
    assert (final.model_extra or {})["citations"] == extra["citations"]
    assert "".join(p or "" for p in pieces) == text


def test_the_stream_never_shows_text_the_answer_takes_back(client: openai.OpenAI) -> None:
    # The bundled model copies the warranty's exclusions here; the check quotes the passage.
    question = "Where is the frame number engraved?"
    whole = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": question}]
    )
    text = whole.choices[0].message.content or ""
    assert "bottom bracket" in text
    events = list(
        client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": question}], stream=True
        )
    )
    pieces = [e.choices[0].delta.content or "" for e in events if e.choices]
    assert "".join(pieces) == text
    assert (whole.model_extra or {})["model_text"], "the model's own text was replaced"


def test_every_error_comes_in_openais_shape(server: str) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    url = f"{server}/v1/chat/completions"
    empty = httpx.post(url, json={"model": "default", "messages": []}, headers=headers)
    malformed = httpx.post(url, content=b"{not json", headers=headers)
    nowhere = httpx.get(f"{server}/v1/nowhere", headers=headers)
    unknown = httpx.post(
        url,
        json={"model": "nosuch", "messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
    )
    for response, status in ((empty, 400), (malformed, 400), (nowhere, 404), (unknown, 404)):
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == status
        assert error["message"]
    assert "messages" in empty.json()["error"]["message"]


@pytest.mark.parametrize("max_tokens", [40_000, 100_000])  # both past the context
def test_a_large_max_tokens_still_answers_from_a_source(
    client: openai.OpenAI, max_tokens: int
) -> None:
    whole = client.chat.completions.create(
        model="birds", messages=[{"role": "user", "content": KESTREL}], max_tokens=max_tokens
    )
    extra = whole.model_extra or {}
    assert [c["source"] for c in extra["citations"]] == ["kestrel.md"]
    assert "voles" in (whole.choices[0].message.content or "")
    assert extra["warnings"][0].startswith(f"max_tokens {max_tokens} was capped at ")


def test_langchain_chat_openai_asks_the_server(server: str) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(base_url=f"{server}/v1", api_key=KEY, model="default", max_retries=0)
    assert "4.5 hours" in str(chat.invoke(CHARGE).content)
    assert "4.5 hours" in "".join(str(c.content) for c in chat.stream(CHARGE))


def test_a_workspace_never_answers_from_anothers_documents(
    client: openai.OpenAI, server: str
) -> None:
    birds = client.chat.completions.create(
        model="birds", messages=[{"role": "user", "content": CHARGE}]
    )
    assert (birds.model_extra or {})["refused"] is True
    assert (birds.model_extra or {})["citations"] == []
    answer = client.chat.completions.create(
        model="birds", messages=[{"role": "user", "content": KESTREL}]
    )
    assert {c["source"] for c in (answer.model_extra or {})["citations"]} == {"kestrel.md"}
    headers = {"Authorization": f"Bearer {KEY}"}
    found = httpx.post(
        f"{server}/v1/search", json={"model": "default", "query": KESTREL}, headers=headers
    ).json()["data"]
    assert all(hit["source"] != "kestrel.md" for hit in found)
    with pytest.raises(openai.NotFoundError, match="no workspace is named 'fish'"):
        client.chat.completions.create(model="fish", messages=[{"role": "user", "content": "x"}])


def test_slides_sheets_and_mail_are_uploaded_over_http_and_cited_by_their_place(
    server: str, client: openai.OpenAI, tmp_path: Path
) -> None:
    from tests.docgen import mail_message, write_eml, write_pptx, write_xlsx

    api = httpx.Client(base_url=f"{server}/v1", headers={"Authorization": f"Bearer {KEY}"})
    assert api.post("/workspaces", json={"name": "office"}).status_code == 201
    deck = write_pptx(tmp_path / "deck.pptx", [("Ferry", ["The ferry leaves at 7:40."], "")])
    sheet = write_xlsx(tmp_path / "rota.xlsx", {"Rota": [["day", "cook"], ["Monday", "Ines"]]})
    mail = write_eml(tmp_path / "note.eml", mail_message("Keys", "The keys are under the mat."))
    sent = api.post(
        "/workspaces/office/documents",
        files=[("files", (p.name, p.read_bytes())) for p in (deck, sheet, mail)],
    ).json()
    assert sorted(sent["added"]) == ["deck.pptx", "note.eml", "rota.xlsx"], sent
    answer = client.chat.completions.create(
        model="office", messages=[{"role": "user", "content": "When does the ferry leave?"}]
    )
    citations = (answer.model_extra or {})["citations"]
    assert [(c["source"], c["location"]) for c in citations] == [("deck.pptx", "slide 1")]
    found = api.post("/search", json={"model": "office", "query": "Who cooks on Monday?"})
    assert found.json()["data"][0]["location"] == "sheet Rota, row 2"
    assert api.delete("/workspaces/office").status_code in (200, 204)


def test_documents_are_uploaded_listed_removed_and_synced_over_http(
    server: str, tmp_path: Path
) -> None:
    api = httpx.Client(base_url=f"{server}/v1", headers={"Authorization": f"Bearer {KEY}"})
    assert api.post("/workspaces", json={"name": "fish"}).status_code == 201
    assert api.post("/workspaces", json={"name": "fish"}).status_code == 409
    # Each error carries its status by its type, never by its wording.
    assert api.post("/workspaces", json={"name": "Fish!"}).status_code == 400
    assert api.patch("/workspaces/default", json={"name": "carp"}).status_code == 400
    assert api.patch("/workspaces/eels", json={"name": "carp"}).status_code == 404
    assert api.delete("/workspaces/eels").status_code == 404
    sent = api.post(
        "/workspaces/fish/documents",
        files=[
            ("files", ("../../trout.md", b"# Trout\n\nBrown trout spawn in autumn gravel.\n")),
            ("files", ("empty.pdf", b"%PDF-1.4 not really")),
        ],
    ).json()
    assert sent["added"] == ["trout.md"]  # the name cannot climb out of the uploads folder
    assert [f["file"] for f in sent["failed"]] == [str(Path(sent["failed"][0]["file"]))]
    assert sent["failed"][0]["file"].endswith("empty.pdf")
    listed = api.get("/workspaces/fish/documents").json()["data"]
    assert [(d["source"], d["chunks"] > 0) for d in listed] == [("trout.md", True)]

    folder = tmp_path / "pond"
    folder.mkdir()
    (folder / "carp.txt").write_text("Carp feed at dusk in warm shallow water.\n")
    (folder / "carp-photo").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    job = api.post("/workspaces/fish/sync", json={"path": str(folder)}).json()
    for _ in range(600):
        job = api.get(f"/jobs/{job['id']}").json()
        if job["state"] != "running":
            break
        time.sleep(0.1)
    assert job["state"] == "done", job
    assert job["files_done"] == job["files_total"] == 1
    assert job["report"]["added"] == ["carp.txt"]
    assert job["report"]["skipped"] == [
        {"file": str(folder / "carp-photo"), "reason": "binary (PNG image)"}
    ]
    sources = {d["source"] for d in api.get("/workspaces/fish/documents").json()["data"]}
    assert sources == {"trout.md", "carp.txt"}

    gone = api.delete("/workspaces/fish/documents/trout.md").json()
    assert gone["chunks_removed"] > 0
    assert not (Path(gone["root"]) / "trout.md").exists()  # an upload's file goes too
    assert api.delete("/workspaces/fish/documents/trout.md").status_code == 404
    assert api.delete("/workspaces/fish").json()["deleted"] is True
    models = [m["id"] for m in api.get("/models").json()["data"]]
    assert models == ["default", "birds"]  # and nothing else was touched
    assert api.get("/workspaces/birds/documents").json()["data"][0]["source"] == "kestrel.md"


def test_a_key_is_required_and_never_optional_off_loopback(server: str, tmp_path: Path) -> None:
    plain = httpx.get(f"{server}/v1/models")
    assert plain.status_code == 401
    wrong = httpx.get(f"{server}/v1/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert httpx.get(f"{server}/health").status_code == 200
    open_wide = subprocess.run(
        [sys.executable, "-m", "rag.cli", "serve", "--host", "0.0.0.0", "--data-dir", "d"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert open_wide.returncode == 2
    assert "needs serve.api_key" in open_wide.stderr
    assert KEY not in SERVE_LOG[server].read_text()  # never logged


def test_a_full_queue_is_told_to_come_back_and_none_hang(server: str) -> None:
    outcomes: list[tuple[int, str | None]] = []

    def ask() -> None:
        response = httpx.post(
            f"{server}/v1/chat/completions",
            json={"model": "default", "messages": [{"role": "user", "content": CHARGE}]},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=120,
        )
        outcomes.append((response.status_code, response.headers.get("Retry-After")))

    askers = [threading.Thread(target=ask) for _ in range(5)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join(timeout=180)
    assert len(outcomes) == 5  # every request answered: none lost, none hung
    codes = sorted(code for code, _ in outcomes)
    assert codes.count(200) >= 2  # one at the model, one waiting (serve.max_queue = 1)
    assert set(codes) <= {200, 429}
    assert 429 in codes
    assert all(retry == "2" for code, retry in outcomes if code == 429)


def test_a_client_that_leaves_mid_stream_frees_the_model(server: str) -> None:
    long = "List every part number in the spare parts table, with its name and price."
    body = {
        "model": "default",
        "stream": True,
        "max_tokens": 400,
        "messages": [{"role": "user", "content": long}],
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream(
        "POST", f"{server}/v1/chat/completions", json=body, headers=headers, timeout=60
    ) as response:
        events = response.iter_lines()
        assert next(events).startswith("data: ")  # the stream began, then the client leaves
    started = time.perf_counter()
    answer = httpx.post(
        f"{server}/v1/chat/completions",
        json={"model": "default", "messages": [{"role": "user", "content": CHARGE}]},
        headers=headers,
        timeout=120,
    )
    assert answer.status_code == 200
    assert "4.5 hours" in answer.json()["choices"][0]["message"]["content"]
    assert time.perf_counter() - started < 30  # not behind 400 tokens of an abandoned answer


def test_a_stopped_generation_closes_the_models_stream_and_hands_the_model_on() -> None:
    closed = threading.Event()

    def endless() -> Generator[str, None, Any]:
        try:
            while True:
                time.sleep(0.01)
                yield "word "
        finally:
            closed.set()  # the model's generator let go of llama.cpp

    async def run() -> None:
        gate = Gate(limit=1)
        generation = Generation(AnswerStream(endless()), gate, gate.join())
        waiting = gate.join()  # the next request, queued behind it
        with pytest.raises(Gate.Busy):
            gate.join()  # one at the model, one waiting: the queue is full
        assert await generation.next() == ("piece", "word ")
        generation.stop()  # the client went away
        assert await asyncio.to_thread(closed.wait, 5)
        assert await asyncio.to_thread(gate.wait, waiting, threading.Event())  # its turn
        gate.leave()

    asyncio.run(run())


@pytest.mark.server
def test_workers_on_one_chroma_server_answer_for_each_other(
    tmp_path: Path, chroma_server: tuple[str, int]
) -> None:
    env = {
        "RAG_DATA_DIR": str(tmp_path / "data"),
        **server_store_environment(chroma_server, "workers"),
    }
    port = free_port()
    log = tmp_path / "serve.log"
    process = start_rag_serve(port, log, env, "--workers", "2")
    url = f"http://127.0.0.1:{port}"
    try:
        workers: set[int] = set()
        deadline = time.monotonic() + 180  # the second worker may still be loading its models
        while len(workers) < 2 and time.monotonic() < deadline:
            with httpx.Client(base_url=url) as fresh:  # a new connection: any worker may take it
                workers.add(fresh.get("/health").json()["worker"])
        assert len(workers) == 2, log.read_text()

        def ask(method: str, path: str, **kwargs: object) -> httpx.Response:
            with httpx.Client(base_url=f"{url}/v1", timeout=120) as fresh:
                return fresh.request(method, path, **kwargs)  # type: ignore[arg-type]

        job = ask("POST", "/workspaces/default/sync", json={"path": str(SAMPLE)}).json()
        while job["state"] == "running":
            time.sleep(0.2)
            polled = ask("GET", f"/jobs/{job['id']}")
            assert polled.status_code == 200, polled.text  # whichever worker the poll reaches
            job = polled.json()
        assert job["state"] == "done", job
        birds = {"files": ("kestrel.md", b"# Kestrels\n\nThe kestrel hovers over the meadow.\n")}
        assert ask("POST", "/workspaces/default/documents", files=birds).status_code == 200
        for _ in range(8):  # each worker's keyword index sees what the other wrote
            with httpx.Client(base_url=url) as fresh:
                found = fresh.post("/v1/search", json={"query": KESTREL, "k": 1}).json()
            assert found["data"][0]["source"] == "kestrel.md"
            assert found["data"][0]["keyword_score"] > 0
        assert ask("GET", "/jobs/" + "0" * 32).status_code == 404
    finally:
        process.terminate()
        process.wait(timeout=60)
