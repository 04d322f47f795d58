"""LangChain's standard retriever tests, against the real store and model."""

from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import RetrieversIntegrationTests

from rag.models.embeddings import Embedder
from rag.pipeline import Pipeline
from rag.retrieval.langchain_retriever import HybridRetriever
from rag.retrieval.retriever import Retriever
from rag.settings import load_settings
from tests.docgen import write_mixed_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample_retriever(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Retriever:
    folder = tmp_path_factory.mktemp("langchain")
    write_mixed_folder(folder / "docs")
    # The standard tests ask for exactly k documents: no relevance floor here.
    settings = load_settings(data_dir=folder / "data", retrieval={"min_similarity": -1})
    pipeline = Pipeline(settings, embedder=embedder)
    pipeline.ingestor.sync([folder / "docs"])
    return pipeline.retriever


class TestHybridRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _retriever(self, sample_retriever: Retriever) -> None:
        self._hybrid = sample_retriever

    @property
    def retriever_constructor(self) -> type[HybridRetriever]:
        return HybridRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"retriever": self._hybrid}

    @property
    def retriever_query_example(self) -> str:
        return "What pressure must the boiler stay below?"


def test_documents_carry_provenance(sample_retriever: Retriever) -> None:
    retriever = HybridRetriever(retriever=sample_retriever, k=1, file_types=["pdf"])
    (document,) = retriever.invoke("What pressure must the boiler stay below?")
    assert isinstance(document, Document)
    assert "3 bar" in document.page_content
    assert document.metadata["source"] == "manual.pdf"
    assert document.metadata["page"] == 2
    assert document.metadata["similarity"] > 0.35
