"""Local, private question answering over your own documents: ingestion, retrieval, answers."""

from rag.answering import Answer, Answerer, Citation, Turn
from rag.embeddings import Embedder
from rag.ingestion import Ingestor, IngestReport
from rag.llm import LLM, LLMError, make_llm
from rag.loaders import LoadError, load
from rag.retrieval import Retrieved, Retriever
from rag.settings import Settings, load_settings
from rag.store import ChunkStore, StoreError

__all__ = [
    "LLM",
    "Answer",
    "Answerer",
    "ChunkStore",
    "Citation",
    "Embedder",
    "IngestReport",
    "Ingestor",
    "LLMError",
    "LoadError",
    "Retrieved",
    "Retriever",
    "Settings",
    "StoreError",
    "Turn",
    "load",
    "load_settings",
    "make_llm",
]
