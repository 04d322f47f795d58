"""Retrieval quality on the shared evaluation set: a gold source in the top 4."""

import json
from pathlib import Path

import pytest

from rag.embeddings import Embedder
from rag.ingestion import Ingestor
from rag.settings import load_settings
from rag.store import ChunkStore
from tests.conftest import SHARED_EVAL

pytestmark = pytest.mark.slow


def test_pydoc_gold_source_in_top_4(tmp_path: Path, embedder: Embedder) -> None:
    assert SHARED_EVAL.is_dir(), f"the shared evaluation set is missing at {SHARED_EVAL}"
    settings = load_settings(data_dir=tmp_path / "data")
    store = ChunkStore(settings, embedder.name)
    report = Ingestor(settings, store, embedder).sync([SHARED_EVAL / "corpus"])
    assert report.ok
    assert len(report.added) == 79

    questions = [
        q
        for q in map(json.loads, (SHARED_EVAL / "qa.jsonl").read_text().splitlines())
        if q["answerable"]
    ]
    vectors = embedder.embed([q["question"] for q in questions])
    hits = 0
    for question, vector in zip(questions, vectors, strict=True):
        top = [hit.metadata["source"] for hit in store.query(vector, 4)]
        hits += any(source in question["sources"] for source in top)
    assert hits / len(questions) >= 0.85, f"{hits} of {len(questions)}"
