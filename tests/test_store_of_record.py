"""Chroma is the store of record: any Chroma client reads the chunks whole, and the keyword
index is rebuilt from it."""

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import chromadb
import pytest
from langchain_chroma import Chroma

from rag.models.embeddings import Embedder
from rag.settings import Settings, load_settings
from tests.conftest import ROOT, SettingsFactory, ingest, run_rag
from tests.docgen import write_mixed_folder

pytestmark = pytest.mark.slow
SAMPLE = ROOT / "data" / "sample"

# What every chunk's metadata carries in Chroma, whatever its format.
EVERY_CHUNK = {
    "source",
    "root",
    "file_type",
    "file_hash",
    "content_hash",
    "pipeline",
    "chunk_index",
    "chunk_count",
    "start_char",
    "end_char",
    "headings",
}


def _client(settings: Settings) -> Any:
    if settings.store.mode == "embedded":
        return chromadb.PersistentClient(path=str(settings.chroma_path))
    return chromadb.HttpClient(host=settings.store.server.host, port=settings.store.server.port)


def test_langchain_reads_every_chunk_whole_from_the_collection(
    make_settings: SettingsFactory, embedder: Embedder, tmp_path: Path
) -> None:
    settings = make_settings()
    docs = tmp_path / "docs"
    write_mixed_folder(docs)
    assert ingest(settings, embedder, docs).ok

    store = Chroma(
        client=_client(settings),
        collection_name=settings.collection_name,
        create_collection_if_not_exists=False,
    )
    held: Any = store.get(include=["documents", "metadatas"])
    assert held["ids"]
    assert None not in held["documents"]
    for metadata in held["metadatas"]:
        assert set(metadata) >= EVERY_CHUNK, metadata
    sources = {m["source"] for m in held["metadatas"]}
    assert "manual.pdf" in sources
    assert any("page" in m for m in held["metadatas"] if m["source"] == "manual.pdf")

    question = embedder.embed(["What does the report say?"])[0]
    found = store.similarity_search_by_vector(list(map(float, question)), k=3)
    assert len(found) == 3
    for document in found:
        assert document.page_content.strip()
        assert set(document.metadata) >= EVERY_CHUNK
        start, end = document.metadata["start_char"], document.metadata["end_char"]
        assert 0 <= start < end


def test_a_lost_keyword_index_is_rebuilt_and_answers_the_same(
    tmp_path: Path, embedder: Embedder
) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    assert ingest(settings, embedder, SAMPLE).ok
    question = "How long does a full charge take?"
    ask = ("ask", "--data-dir", str(settings.data_dir), "--json", question)
    before = run_rag(*ask)
    assert before.returncode == 0, before.stderr

    shutil.rmtree(settings.data_dir / "keywords")
    after = run_rag(*ask)
    assert after.returncode == 0, after.stderr
    assert settings.keywords_path().exists()
    answered, again = json.loads(before.stdout), json.loads(after.stdout)
    assert "4.5 hours" in answered["answer"]
    assert again["answer"] == answered["answer"]
    assert again["citations"] == answered["citations"]


def test_an_older_store_gives_chroma_the_texts_its_index_held(
    tmp_path: Path, embedder: Embedder
) -> None:
    """A store written when the embedded collection held vectors and filters alone."""
    settings = load_settings(data_dir=tmp_path / "data")
    docs = tmp_path / "docs"
    write_mixed_folder(docs)
    assert ingest(settings, embedder, docs).ok
    client = chromadb.PersistentClient(path=str(settings.chroma_path))
    collection = client.get_collection(settings.collection_name)
    whole: Any = collection.get(include=["documents", "metadatas", "embeddings"])
    assert None not in whole["documents"]  # what this version writes, made lean below
    lean: Any = [{"source": m["source"], "file_type": m["file_type"]} for m in whole["metadatas"]]
    collection.delete(ids=whole["ids"])
    collection.add(ids=whole["ids"], embeddings=whole["embeddings"], metadatas=lean)
    del collection, client
    with sqlite3.connect(settings.keywords_path()) as index:
        index.execute("DELETE FROM meta WHERE key = 'chroma_rows'")

    result = run_rag("sources", "--data-dir", str(settings.data_dir))
    assert result.returncode == 0, result.stderr
    collection = chromadb.PersistentClient(path=str(settings.chroma_path)).get_collection(
        settings.collection_name
    )
    now: Any = collection.get(include=["documents", "metadatas"])
    assert dict(zip(now["ids"], now["documents"], strict=True)) == dict(
        zip(whole["ids"], whole["documents"], strict=True)
    )
    assert dict(zip(now["ids"], now["metadatas"], strict=True)) == dict(
        zip(whole["ids"], whole["metadatas"], strict=True)
    )


def test_doctor_repair_rebuilds_the_keyword_index_from_chroma(
    tmp_path: Path, embedder: Embedder
) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    assert ingest(settings, embedder, SAMPLE).ok
    with sqlite3.connect(settings.keywords_path()) as index:
        held = index.execute("SELECT count(*) FROM chunks").fetchone()[0]
        index.execute("DELETE FROM chunks WHERE rowid = (SELECT min(rowid) FROM chunks)")

    result = run_rag(
        "doctor", "--data-dir", str(settings.data_dir), "--no-workload", "--json", "--repair"
    )
    checks = {(c["section"], c["name"]): c for c in json.loads(result.stdout)["checks"]}
    assert checks["store", "keyword index rebuilt"]["value"] == f"{held} chunks from Chroma"
    assert checks["store", "keyword index"]["status"] == "ok"
    with sqlite3.connect(settings.keywords_path()) as index:
        assert index.execute("SELECT count(*) FROM chunks").fetchone()[0] == held
