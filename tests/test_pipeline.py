"""The one composition root: every part is wired in rag.pipeline, and wired once."""

import re
from pathlib import Path

import pytest

from rag.errors import ModelNotFoundError
from rag.models.embeddings import Embedder
from rag.pipeline import Pipeline
from rag.storage.connection import StoreError
from tests.conftest import ROOT, SettingsFactory

SAMPLE = ROOT / "data" / "sample"
_BUILT = re.compile(r"(?<![\w.])(Answerer|Retriever|Ingestor|ChunkStore)\(")
# Where a part may still be built on its own, and why.
_ALLOWED = {
    "rag/pipeline.py": "the composition root itself",
    "rag/doctor/store_checks.py": "checks a store it opens without the model (ChunkStore only)",
    "tests/test_settling.py": "the settling logic over an Answerer with a scripted model, no store",
}


def _front_doors_and_tests() -> list[Path]:
    folders = ("rag", "ui", "bench", "tests")
    return [ROOT / "ingest.py", *(p for f in folders for p in sorted((ROOT / f).rglob("*.py")))]


def test_the_pipeline_is_assembled_in_one_place() -> None:
    built_by_hand = []
    for path in _front_doors_and_tests():
        relative = path.relative_to(ROOT).as_posix()
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for part in _BUILT.findall(line):
                if line.lstrip().startswith("class "):
                    continue
                allowed = relative in _ALLOWED and (
                    relative != "rag/doctor/store_checks.py" or part == "ChunkStore"
                )
                store_test = part == "ChunkStore" and relative.startswith("tests/")
                if not (allowed or store_test):  # tests of the store itself open bare stores
                    built_by_hand.append(f"{relative}:{number}: {line.strip()}")
    assert not built_by_hand, "\n".join(built_by_hand)


def test_one_store_serves_every_part_and_the_model_waits_for_its_first_use(
    make_settings: SettingsFactory, embedder: Embedder, tmp_path: Path
) -> None:
    settings = make_settings(llm={"llama_cpp": {"model_path": tmp_path / "missing.gguf"}})
    pipeline = Pipeline(settings, embedder=embedder)
    assert pipeline.retriever.store is pipeline.store is pipeline.ingestor.store
    assert pipeline.embedder is embedder
    # Ingesting and searching never need the model file.
    assert pipeline.ingestor.sync([SAMPLE]).ok
    found = pipeline.retriever.retrieve("How long does a full charge of the battery take?")
    assert found[0].metadata["source"] == "user-guide.md"
    with pytest.raises(ModelNotFoundError, match=r"missing\.gguf"):
        pipeline.answerer  # noqa: B018 (the property builds the model)
    unfloored = pipeline.retriever_with(min_similarity=-1)
    assert unfloored.store is pipeline.store
    assert unfloored.settings.min_similarity == -1
    assert pipeline.retriever.settings.min_similarity == settings.retrieval.min_similarity
    pipeline.close()
    if settings.store.mode == "embedded":  # an HTTP client reconnects; a closed store does not
        with pytest.raises(StoreError):
            pipeline.store.count()


def test_the_answerer_shares_the_pipelines_retriever_and_a_given_model(
    make_settings: SettingsFactory, embedder: Embedder
) -> None:
    with Pipeline(make_settings(), embedder=embedder) as first:
        model = first.llm
        assert first.answerer.retriever is first.retriever
        assert first.answerer.llm is model
        with Pipeline(make_settings(), embedder=embedder, llm=model) as second:
            assert second.llm is model  # one loaded model for every pipeline of a process


# An outside system's client, and the store's insides, each used by one package alone.
_OWNED = {
    "rag/storage/": re.compile(
        r"\bimport chromadb\b|\bfrom chromadb\b"
        r"|(?<!settings\.)(?<![`{])store\.(collection|client|lock|index|keywords)\b"
        r"|\._read_pages\b|\bKeywordIndex\(|\bStoreLock\("
    ),
    "rag/models/": re.compile(
        r"\bimport (llama_cpp|openai|sentence_transformers)\b"
        r"|\bfrom (llama_cpp|openai|sentence_transformers)\b"
    ),
}


def test_only_storage_touches_chroma_and_only_models_touch_the_model_clients() -> None:
    outside = []
    for path in [
        ROOT / "ingest.py",
        *sorted((ROOT / "rag").rglob("*.py")),
        *sorted((ROOT / "ui").rglob("*.py")),
    ]:
        relative = path.relative_to(ROOT).as_posix()
        for owner, used in _OWNED.items():
            if relative.startswith(owner) or relative == "rag/settings.py":  # the settings' names
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if used.search(line):
                    outside.append(f"{relative}:{number}: {line.strip()}")
    assert not outside, "\n".join(outside)
