"""The one place the pipeline is assembled: store, models, retriever, ingestor, answerer, chats.

Every front door (the CLI, the chat app), every benchmark and every test builds its parts here,
so they all get the same wiring: the store opened with the same checks, the retriever and the
answerer over the same store and models, one ``close()``. A process that answers many questions
shares the heavy models between pipelines by passing them in (``embedder=``, ``llm=``).

The model is built on first use, so ingesting and searching never need a model file.
Limits: one pipeline holds one store and its collection; it is not safe to ``close()`` while
another thread still uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from rag.answering.answerer import Answerer
from rag.conversations import Conversations
from rag.ingest.ingestion import Ingestor, Progress
from rag.models.embeddings import Embedder
from rag.models.llm import LLM, make_llm
from rag.retrieval.retriever import Retriever
from rag.settings import LLMSettings, Settings
from rag.storage.store import open_store


class Pipeline:
    """Every part the settings describe, wired once."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        llm: LLM | None = None,
        llm_from: Callable[[], LLM] | None = None,
        on_wait: Callable[[str], None] | None = None,
        check_embedder: bool = True,
    ) -> None:
        """Open the store and build what depends on it; the model waits for its first use.

        ``embedder`` and ``llm``, when given, are models already loaded by this process (they
        are not closed with the pipeline); ``llm_from`` gives the model on first use instead
        (one shared by several pipelines, built when the first needs it). ``on_wait`` hears
        why a write waits for another writer. ``check_embedder`` off opens a store built with
        another embedding model, to empty it.

        Raises:
            StoreError: the store is unreachable, or was built with another embedding model.
        """
        self.settings = settings
        self.embedder = embedder or Embedder(settings.embedding)
        self.store = open_store(settings, self.embedder.name, on_wait, check_embedder)
        self.retriever = Retriever(settings.retrieval, self.store, self.embedder)
        self.ingestor = Ingestor(settings, self.store, self.embedder)
        self.conversations = Conversations(settings.conversations_path, settings.workspace)
        self._llm = llm
        self._llm_from = llm_from or (lambda: make_llm(settings.llm))
        self._answerer: Answerer | None = None

    @property
    def llm(self) -> LLM:
        """The model the settings name, built on first use.

        Raises:
            ModelNotFoundError: the GGUF file does not exist.
        """
        if self._llm is None:
            self._llm = self._llm_from()
        return self._llm

    @property
    def answerer(self) -> Answerer:
        """Retrieval, prompt, generation and citations over this pipeline's store and model."""
        if self._answerer is None:
            self._answerer = Answerer(
                self.settings.answer, self.settings.llm, self.retriever, self.llm
            )
        return self._answerer

    def answerer_with(self, llm_settings: LLMSettings, llm: LLM) -> Answerer:
        """An answerer over this store with another model (the one chosen in the app)."""
        return Answerer(self.settings.answer, llm_settings, self.retriever, llm)

    def retriever_with(self, **changes: Any) -> Retriever:
        """A retriever over this store with some retrieval settings changed (to compare them)."""
        settings = self.settings.retrieval.model_copy(update=changes)
        return Retriever(settings, self.store, self.embedder)

    def ingestor_reporting(self, progress: Progress) -> Ingestor:
        """An ingestor over this store that reports to ``progress``.

        One per caller that shows its own progress (a browser session's upload): the shared
        ``ingestor`` reports nowhere.
        """
        return Ingestor(self.settings, self.store, self.embedder, progress)

    def remove_document(self, root: str, source: str) -> int:
        """Take a document out of the store, and delete its file when it was an upload.

        Returns the number of chunks removed.
        """
        removed = self.ingestor.remove(root, source)
        uploads = self.settings.uploads_dir.resolve()
        if root == str(uploads):
            (uploads / source).unlink(missing_ok=True)
        return removed

    def close(self) -> None:
        """Close the store (and its client); the models stay loaded for their other users."""
        self.store.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
