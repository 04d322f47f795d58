"""Named workspaces: separate sets of documents, each with its own collection and uploads.

A workspace is a name (``settings.workspace``, ``--workspace NAME``). The default one is
today's store as it always was: the collection ``store.collection`` and ``data/uploads``, so
existing stores need no migration. Any other workspace NAME lives in the collection
``{store.collection}__NAME`` of the same store, and its uploads in
``data/workspaces/NAME/uploads``. A question asked in one workspace only ever reaches that
workspace's collection. Removing a workspace drops its collection (its chunks and their file
records, which are the same rows), its uploads folder and its conversations, and nothing else.

:class:`Workspaces` holds the pipelines of a long-running process (the API server, the app),
one per workspace, sharing one embedding model and one LLM. Limits: names are lowercase
letters, digits, ``-`` and ``_``, at most 40 characters; a rename is not atomic across the
collection and the uploads folder.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Callable

from rag.errors import RagError
from rag.models.embeddings import Embedder
from rag.models.llm import LLM
from rag.pipeline import Pipeline
from rag.settings import DEFAULT_WORKSPACE, WORKSPACE_NAME, WORKSPACE_SEPARATOR, Settings

_NAME = re.compile(WORKSPACE_NAME)


class WorkspaceError(RagError):
    """A workspace name that is not valid, or an action the workspace does not allow."""

    http_status = 400


class WorkspaceExistsError(WorkspaceError):
    """A workspace of that name exists already."""

    http_status = 409


class NoWorkspaceError(WorkspaceError):
    """No workspace has that name."""

    http_status = 404


def checked_name(name: str) -> str:
    """``name`` when it can name a workspace.

    Raises:
        WorkspaceError: it cannot.
    """
    if not _NAME.match(name):
        msg = (
            f"{name!r} is not a workspace name: use lowercase letters, digits, '-' and '_', "
            "starting with a letter or digit, at most 40 characters"
        )
        raise WorkspaceError(msg)
    return name


def in_workspace(settings: Settings, name: str) -> Settings:
    """The same settings, for workspace ``name``."""
    return settings.model_copy(update={"workspace": checked_name(name)})


class Workspaces:
    """Every workspace of one store, each with its pipeline, built on first use."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        llm: LLM | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        """Open the default workspace; the others open when first asked for.

        Raises:
            StoreError: the store is unreachable or was built with another embedding model.
        """
        self.settings = in_workspace(settings, DEFAULT_WORKSPACE)
        self._lock = threading.RLock()
        self._on_wait = on_wait
        default = Pipeline(self.settings, embedder=embedder, llm=llm, on_wait=on_wait)
        self._pipelines: dict[str, Pipeline] = {DEFAULT_WORKSPACE: default}
        self._default = default

    @property
    def default(self) -> Pipeline:
        """The default workspace's pipeline."""
        return self._default

    def names(self) -> list[str]:
        """Every workspace of the store, the default first."""
        prefix = self.settings.store.collection + WORKSPACE_SEPARATOR
        store = self.default.store
        found = store.collection_names()
        others = sorted(n.removeprefix(prefix) for n in found if n.startswith(prefix))
        return [DEFAULT_WORKSPACE, *(n for n in others if _NAME.match(n))]

    def is_open(self, name: str) -> bool:
        """Whether this process has workspace ``name`` open (no store read)."""
        return name in self._pipelines

    def get(self, name: str) -> Pipeline:
        """The pipeline of an existing workspace.

        Raises:
            WorkspaceError: no workspace has that name.
        """
        with self._lock:
            if name in self._pipelines:
                return self._pipelines[name]
            if name not in self.names():
                msg = f"no workspace is named {name!r}"
                raise NoWorkspaceError(msg)
            return self._open(name)

    def create(self, name: str) -> Pipeline:
        """A new, empty workspace.

        Raises:
            WorkspaceError: the name is not valid or is taken.
        """
        with self._lock:
            return self._open(self._free(name))

    def _free(self, name: str) -> str:
        """``name`` when it is valid and no workspace has it yet."""
        if checked_name(name) in self.names():
            msg = f"a workspace named {name!r} exists already"
            raise WorkspaceExistsError(msg)
        return name

    def _open(self, name: str) -> Pipeline:
        settings = in_workspace(self.settings, name)
        # One model for every workspace: the default's, built when the first one needs it.
        pipeline = Pipeline(
            settings, embedder=self.default.embedder, llm_from=self._model, on_wait=self._on_wait
        )
        self._pipelines[name] = pipeline
        return pipeline

    def _model(self) -> LLM:
        return self.default.llm

    def remove(self, name: str) -> None:
        """Drop the workspace's chunks, records, uploads and conversations; nothing else.

        Raises:
            WorkspaceError: it is the default workspace, or no workspace has that name.
        """
        with self._lock:
            if name == DEFAULT_WORKSPACE:
                msg = "the default workspace cannot be removed (empty it with `rag ingest --reset`)"
                raise WorkspaceError(msg)
            pipeline = self.get(name)
            pipeline.store.drop()
            pipeline.conversations.delete_all()
            pipeline.close()
            del self._pipelines[name]
            shutil.rmtree(pipeline.settings.workspace_dir, ignore_errors=True)

    def rename(self, old: str, new: str) -> Pipeline:
        """Give workspace ``old`` the name ``new``, with its chunks and uploads.

        Raises:
            WorkspaceError: either is the default, ``old`` does not exist or ``new`` is taken.
        """
        with self._lock:
            if DEFAULT_WORKSPACE in (old, new):
                msg = "the default workspace cannot be renamed"
                raise WorkspaceError(msg)
            pipeline = self.get(old)
            renamed = in_workspace(self.settings, self._free(new))
            pipeline.store.rename(renamed.collection_name)
            pipeline.conversations.move_to(new)
            pipeline.close()
            del self._pipelines[old]
            if pipeline.settings.workspace_dir.exists():
                renamed.workspace_dir.parent.mkdir(parents=True, exist_ok=True)
                pipeline.settings.workspace_dir.rename(renamed.workspace_dir)
            return self._open(new)

    def close(self) -> None:
        """Close every workspace's store."""
        with self._lock:
            for pipeline in self._pipelines.values():
                pipeline.close()
            self._pipelines.clear()
