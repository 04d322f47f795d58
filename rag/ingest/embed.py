"""Ingest's embed step: where the model runs, chosen in one place (:class:`EmbeddingRunner`).

In this process, or in a process of its own (``ingest.embedding_process``): Chroma's ``add``
holds Python's lock while it writes, which stalls a model in the same process, so a large sync
on a GPU feeds a model process while this one writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from rag.models.embedding_process import EmbeddingProcess, EmbeddingProcessError
from rag.models.embeddings import Embedder

if TYPE_CHECKING:
    from numpy.typing import NDArray

log = logging.getLogger(__name__)

# Chunks a sync embeds on a GPU here before it starts the model's own process: a watched
# folder's syncs stay below it, and a larger sync loads the process (seconds) beside embedding.
_OWN_PROCESS_AFTER = 4096


class EmbeddingRunner:
    """A sync's embedding: here, or in a process of its own once that process has loaded.

    ``ingest.embedding_process``: 'own' starts the process with the sync's first chunks;
    'auto' starts it on a GPU once a sync has embedded ``_OWN_PROCESS_AFTER`` chunks here (a
    watched folder's small sync never pays for it). Chunks are embedded here until it is ready.
    """

    def __init__(self, embedder: Embedder, where: str) -> None:
        self.embedder = embedder
        self.where = where
        self.embedded_here = 0
        self.own: EmbeddingProcess | None = None

    @property
    def on_gpu(self) -> bool:
        """True when the model runs on a GPU."""
        return self.embedder.on_gpu

    def embed(
        self, texts: list[str], on_batch: Callable[[int], None], token_counts: list[int]
    ) -> NDArray[np.float32]:
        """Unit-length embeddings of ``texts`` (see :meth:`Embedder.embed`)."""
        if self.own is None and self._wants_own_process():
            self.own = EmbeddingProcess(self.embedder.settings)
        if self.own is not None and self._own_ready(self.own):
            counted = 0

            def counting(count: int) -> None:
                nonlocal counted
                counted += count
                on_batch(count)

            try:
                return self.own.embed(texts, counting, token_counts)
            except EmbeddingProcessError as error:  # killed (the kernel's OOM killer, a user)
                self._give_up(self.own, error)
                on_batch = _counting_after(counted, on_batch)  # its batches are counted once
        self.embedded_here += len(texts)
        return self.embedder.embed(texts, on_batch=on_batch, token_counts=token_counts)

    def _own_ready(self, own: EmbeddingProcess) -> bool:
        """Whether the process has loaded.

        One that could not (a second copy of the model may not fit on the device) is given up
        for the rest of the sync, which goes on here.
        """
        try:
            return own.ready()
        except EmbeddingProcessError as error:
            self._give_up(own, error)
            return False

    def _give_up(self, own: EmbeddingProcess, error: EmbeddingProcessError) -> None:
        """Embed the rest of the sync here, and say why."""
        log.warning("%s: embedding in the ingesting process instead", error)
        own.close()
        self.where = "this"
        self.own = None

    def _wants_own_process(self) -> bool:
        if self.where == "own":
            return True
        return (
            self.where == "auto"
            and self.embedded_here >= _OWN_PROCESS_AFTER
            and self.embedder.on_gpu
        )

    def __enter__(self) -> EmbeddingRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.own is not None:
            self.own.close()


def _counting_after(done: int, on_batch: Callable[[int], None]) -> Callable[[int], None]:
    """``on_batch`` for embedding texts again whose first ``done`` were counted already."""
    owed = done

    def counting(count: int) -> None:
        nonlocal owed
        skipped = min(owed, count)
        owed -= skipped
        if count > skipped:
            on_batch(count - skipped)

    return counting
