"""The hybrid retriever as a LangChain retriever, for users' own chains.

Documents carry the provenance a citation needs in their metadata: source, page, headings,
character offsets, and the similarity, keyword and fused scores.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from rag.retrieval.retriever import Retriever


class HybridRetriever(BaseRetriever):
    """LangChain face of :class:`rag.retrieval.retriever.Retriever`; ``invoke(query, k=3)`` too."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Retriever
    k: int = 4
    sources: list[str] | None = None  # only chunks from these source paths
    file_types: list[str] | None = None  # only chunks from these file types ("pdf", "md")

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        found = self.retriever.retrieve(
            query, int(kwargs.get("k", self.k)), self.sources, self.file_types
        )
        return [
            Document(
                id=chunk.id,
                page_content=chunk.text,
                metadata={
                    **chunk.metadata,
                    "similarity": chunk.similarity,
                    "keyword_score": chunk.keyword_score,
                    "fused_score": chunk.fused_score,
                },
            )
            for chunk in found
        ]
