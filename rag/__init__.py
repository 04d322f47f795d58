"""Local, private question answering over your own documents: ingestion, retrieval, answers."""

from rag.answering.answer import Answer, Citation, Turn
from rag.answering.answerer import Answerer
from rag.documents.document import LoadError
from rag.documents.loaders import load
from rag.ingest.ingestion import Ingestor, IngestReport
from rag.models.embeddings import Embedder
from rag.models.llm import LLM, LLMError, make_llm
from rag.retrieval.retriever import Retrieved, Retriever
from rag.settings import Settings, load_settings
from rag.storage.connection import StoreError
from rag.storage.store import ChunkStore

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
