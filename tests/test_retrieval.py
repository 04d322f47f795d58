"""Retrieval quality on the shared evaluation set (the real corpus, model and store)."""

import json
from collections.abc import Iterator
from typing import Any

import pytest

from rag.models.embeddings import Embedder
from rag.pipeline import Pipeline
from rag.retrieval.retriever import Retriever
from rag.settings import load_settings
from tests.conftest import SHARED_EVAL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pydoc(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Pipeline]:
    assert SHARED_EVAL.is_dir(), f"the shared evaluation set is missing at {SHARED_EVAL}"
    settings = load_settings(data_dir=tmp_path_factory.mktemp("pydoc"))
    with Pipeline(settings, embedder=embedder) as pipeline:
        report = pipeline.ingestor.sync([SHARED_EVAL / "corpus"])
        assert report.ok
        assert len(report.added) == 79
        yield pipeline


@pytest.fixture(scope="module")
def questions() -> list[dict[str, Any]]:
    lines = (SHARED_EVAL / "qa.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_pydoc_gold_source_in_dense_top_4(
    pydoc: Pipeline, embedder: Embedder, questions: list[dict[str, Any]]
) -> None:
    answerable = [q for q in questions if q["answerable"]]
    vectors = embedder.embed([q["question"] for q in answerable])
    hits = 0
    for question, vector in zip(answerable, vectors, strict=True):
        top = [hit.metadata["source"] for hit in pydoc.store.query(vector, 4)]
        hits += any(source in question["sources"] for source in top)
    assert hits / len(answerable) >= 0.85, f"{hits} of {len(answerable)}"


def score(retriever: Retriever, questions: list[dict[str, Any]]) -> tuple[int, float, int]:
    """(answerable questions with a gold source in the top k, MRR, unanswerable with nothing)."""
    hits, reciprocal, refused, answerable = 0, 0.0, 0, 0
    for question in questions:
        found = [
            {r.metadata["source"], *r.also_in} for r in retriever.retrieve(question["question"])
        ]
        if not question["answerable"]:
            refused += not found
            continue
        answerable += 1
        gold = set(question["sources"])
        rank = next((i for i, sources in enumerate(found, 1) if sources & gold), None)
        hits += rank is not None
        reciprocal += 1 / rank if rank else 0.0
    return hits, reciprocal / answerable, refused


def test_pydoc_hybrid_beats_dense_and_refuses_the_unanswerable(
    pydoc: Pipeline, embedder: Embedder, questions: list[dict[str, Any]]
) -> None:
    dense_only = {"hybrid": False, "sentence_rerank": False}
    settings = load_settings(data_dir=pydoc.settings.data_dir, retrieval=dense_only)
    with Pipeline(settings, embedder=embedder) as dense_pipeline:
        dense = score(dense_pipeline.retriever, questions)
    hybrid = score(pydoc.retriever, questions)
    assert hybrid[0] == 28, hybrid  # a gold source in the top 4 for every answerable question
    assert hybrid[1] >= 0.93, hybrid
    assert hybrid[0] > dense[0], (hybrid, dense)
    assert hybrid[1] > dense[1], (hybrid, dense)
    assert hybrid[2] == 6  # the relevance floor leaves nothing for every unanswerable question


def test_pydoc_answers_with_the_bundled_model(
    pydoc: Pipeline, questions: list[dict[str, Any]]
) -> None:
    """The issue's figures, from the real pipeline: accuracy, refusals, citation precision."""
    from rag.evaluation import EvalQuestion, evaluate

    figures = evaluate(pydoc.answerer, [EvalQuestion(**q) for q in questions], 4).figures()
    assert figures["hit@4"] == 1.0, figures
    assert figures["mrr"] >= 0.93, figures
    assert figures["accuracy"] >= 0.45, figures  # 0.536 when measured; greedy, but CPU-dependent
    assert figures["refusal_rate"] >= 5 / 6, figures
    assert figures["wrong_refusals"] <= 2, figures
    assert figures["citation_precision"] >= 0.85, figures
