"""Hybrid retrieval against the real store (embedded and server) and the real model."""

from pathlib import Path

import pytest

from rag.embeddings import Embedder
from rag.ingestion import Ingestor
from rag.retrieval import Retriever
from rag.settings import RetrievalSettings
from rag.store import ChunkStore
from tests.docgen import write_mixed_folder

pytestmark = pytest.mark.slow


def test_keywords_find_what_dense_search_ranks_low(ingestor: Ingestor, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_mixed_folder(docs)
    (docs / "codes.md").write_text("# Error codes\n\nCode XJ-4417 means the pump is blocked.\n")
    ingestor.sync([docs])
    retriever = Retriever(RetrievalSettings(min_similarity=-1), ingestor.store, ingestor.embedder)
    top = retriever.retrieve("XJ-4417", k=1)[0]
    assert top.metadata["source"] == "codes.md"
    assert top.keyword_score > 0


def test_keyword_index_follows_writes_from_another_store(
    ingestor: Ingestor, tmp_path: Path, embedder: Embedder
) -> None:
    docs = tmp_path / "docs"
    write_mixed_folder(docs)
    ingestor.sync([docs])
    # A second store object on the same collection: as another process would see it.
    reader_store = ChunkStore(ingestor.settings, embedder.name)
    retriever = Retriever(RetrievalSettings(min_similarity=-1), reader_store, embedder)
    assert retriever.retrieve("kestrel", k=1)[0].keyword_score == 0
    (docs / "birds.md").write_text("# Birds\n\nThe kestrel hovers over the meadow.\n")
    ingestor.sync([docs])
    top = retriever.retrieve("kestrel", k=1)[0]
    assert (top.metadata["source"], top.keyword_score > 0) == ("birds.md", True)
    (docs / "birds.md").unlink()
    ingestor.sync([docs])
    assert all(r.metadata["source"] != "birds.md" for r in retriever.retrieve("kestrel", k=4))
    assert len(retriever.index) == ingestor.store.count()


def test_filters_and_floor(ingestor: Ingestor, tmp_path: Path) -> None:
    write_mixed_folder(tmp_path / "docs")
    ingestor.sync([tmp_path / "docs"])
    unfloored = Retriever(RetrievalSettings(min_similarity=-1), ingestor.store, ingestor.embedder)
    only_pdf = unfloored.retrieve("boiler pressure", file_types=["pdf"], k=4)
    assert {r.metadata["file_type"] for r in only_pdf} == {"pdf"}
    only_guide = unfloored.retrieve("When should tomatoes be watered?", sources=["guide.md"])
    assert {r.metadata["source"] for r in only_guide} == {"guide.md"}

    retriever = Retriever(RetrievalSettings(), ingestor.store, ingestor.embedder)
    assert retriever.retrieve("boiler pressure", k=1)[0].metadata["source"] == "manual.pdf"
    # Nothing in the documents is about this: the relevance floor leaves nothing.
    assert retriever.retrieve("What is the capital of Mongolia?") == []
