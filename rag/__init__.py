"""Local, private question answering over your own documents: ingestion and retrieval."""

from rag.embeddings import Embedder
from rag.ingestion import Ingestor, IngestReport
from rag.loaders import LoadError, load
from rag.retrieval import Retrieved, Retriever
from rag.settings import Settings, load_settings
from rag.store import ChunkStore, StoreError

__all__ = [
    "ChunkStore",
    "Embedder",
    "IngestReport",
    "Ingestor",
    "LoadError",
    "Retrieved",
    "Retriever",
    "Settings",
    "StoreError",
    "load",
    "load_settings",
]
