"""The embedding model in a process of its own, fed while the ingesting process writes.

Chroma's ``add`` holds Python's lock for the whole of its run. A model in the same process
cannot take its next step (on a GPU, launch its next kernels) until that write ends, so the
embedding and the writes take turns instead of overlapping. In a process of its own, the model
keeps embedding the batches it was sent while this process writes.

The process is a new Python running :func:`serve_fd`, not a ``multiprocessing`` child, which
would import the calling program's main module again (an unguarded script would run twice).
It talks over a socket pair and ends when its end closes, so it never outlives the program
(Ctrl-C does not reach it: its session is its own). When it cannot load or dies, the
ingest embeds the rest itself (``rag.ingest.ingestion``).
Limits: batches are formed here (by length, as :meth:`Embedder.embed` forms them), and the
model is loaded a second time (memory on the device for two copies); Unix only (fd passing).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.errors import RagError
from rag.settings import EmbeddingSettings

if TYPE_CHECKING:
    from numpy.typing import NDArray

_IN_FLIGHT = 4  # batches sent ahead of the one being received: the model never waits
# The process's program (``-m`` would warn that the package imported this module first).
_MAIN = (
    "import sys; from rag.models.embedding_process import serve_fd; sys.exit(serve_fd(sys.argv[1]))"
)


class EmbeddingProcessError(RagError):
    """The embedding process failed or ended."""


class EmbeddingProcess:
    """An :class:`~rag.models.embeddings.Embedder` in a process of its own, started at once."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, "-c", _MAIN, str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C is the parent's: it closes the socket, this ends
        )
        theirs.close()
        self._socket = ours  # kept to shut down: that wakes a send blocked on a full socket
        self._connection = Connection(os.dup(ours.fileno()))
        self._connection.send(settings.model_dump(mode="json"))
        self._closed = False
        self._ready: tuple[str, int] | None = None

    @property
    def pid(self) -> int:
        """The process's id."""
        return self._process.pid

    def _started(self) -> tuple[str, int]:
        """(device, batch size) of the loaded model; waits for it to load."""
        if self._ready is None:
            device, batch_size = self._receive()
            self._ready = (str(device), int(batch_size))
        return self._ready

    def ready(self) -> bool:
        """True once the model has loaded; never waits. Raises when it failed to load."""
        if self._ready is None and not self._connection.poll():
            return False
        self._started()
        return True

    def embed(
        self,
        texts: list[str],
        on_batch: Callable[[int], None] | None,
        token_counts: list[int],
    ) -> NDArray[np.float32]:
        """Unit-length embeddings of ``texts``, as :meth:`Embedder.embed` makes them.

        A thread sends batches ahead while this one receives: sending every batch first could
        fill both directions of the socket, each side waiting for the other to read.
        """
        _, size = self._started()
        order = sorted(range(len(texts)), key=lambda i: token_counts[i], reverse=True)
        batches = [order[start : start + size] for start in range(0, len(order), size)]
        room = threading.Semaphore(_IN_FLIGHT)

        def send() -> None:
            with contextlib.suppress(OSError):  # the process ended: the receiving side says why
                for batch in batches:
                    room.acquire()
                    self._connection.send(
                        ([texts[i] for i in batch], [token_counts[i] for i in batch])
                    )

        sender = threading.Thread(target=send, name="embedding-sender", daemon=True)
        sender.start()
        vectors: NDArray[np.float32] | None = None
        try:
            for batch in batches:
                received = np.asarray(self._receive(), dtype=np.float32)
                room.release()
                if vectors is None:
                    vectors = np.zeros((len(texts), received.shape[1]), dtype=np.float32)
                vectors[batch] = received
                if on_batch is not None:
                    on_batch(len(batch))
        except BaseException:
            self.close()  # answers still on their way would be taken for the next call's
            raise
        finally:
            room.release(len(batches))  # a sender still waiting for room ends
            sender.join()
        if vectors is None:
            return np.zeros((0, 0), dtype=np.float32)
        return vectors

    def _receive(self) -> Any:
        """The process's next answer; its error as an :class:`EmbeddingProcessError`."""
        try:
            kind, value = self._connection.recv()
        except (EOFError, OSError):
            code = self._process.wait()
            msg = (
                f"the embedding process (pid {self._process.pid}) ended with exit code {code}; "
                "its error, if it printed one, is in the log above"
            )
            raise EmbeddingProcessError(msg) from None
        if kind == "error":
            raise EmbeddingProcessError(f"the embedding process failed: {value}")
        return value

    def close(self) -> None:
        """End the process (it ends when its socket closes) and wait for it."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):  # the process may have closed its end first
            self._socket.shutdown(socket.SHUT_RDWR)
        self._connection.close()
        self._socket.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def serve(connection: Connection) -> int:
    """The process's loop: load the model, then embed each batch received, until EOF."""
    from rag.models.embeddings import Embedder

    try:
        embedder = Embedder(EmbeddingSettings.model_validate(connection.recv()))
        connection.send(("ready", (embedder.device, embedder.batch_size)))
        while True:
            try:
                texts, counts = connection.recv()
            except EOFError:
                return 0
            connection.send(("vectors", embedder.embed(texts, token_counts=counts)))
    except Exception as error:  # the model's failures are many kinds; the parent says which
        with contextlib.suppress(OSError):  # the parent is gone: nobody to tell
            connection.send(("error", f"{type(error).__name__}: {error}"))
        return 1


def serve_fd(fd: str) -> int:
    """:func:`serve` on the socket the parent passed as file descriptor ``fd``."""
    return serve(Connection(int(fd)))
