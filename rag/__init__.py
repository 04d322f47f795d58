"""Local, private question answering over your own documents: the ingestion half."""

from rag.embeddings import Embedder
from rag.ingestion import Ingestor, IngestReport
from rag.loaders import LoadError, load
from rag.settings import Settings, load_settings
from rag.store import ChunkStore, StoreError

__all__ = [
    "ChunkStore",
    "Embedder",
    "IngestReport",
    "Ingestor",
    "LoadError",
    "Settings",
    "StoreError",
    "load",
    "load_settings",
]
