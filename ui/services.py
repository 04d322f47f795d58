"""What the chat app needs from the rag package, built once per process, plus safe text and uploads.

The app adds no retrieval or generation of its own: it holds one :class:`Services` per set of
settings, shared by every browser session (the model and the store are loaded once), and only
turns documents' and the model's text into something Streamlit shows literally.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from rag.answering.answerer import Answerer
from rag.conversations import Conversations
from rag.doctor import Report, diagnose
from rag.documents.loaders import SUPPORTED_TYPES
from rag.models.choice import ModelChoice, model_settings, remember_model
from rag.models.llama_cpp_llm import LlamaCppLLM
from rag.models.llm import LLM, name_of
from rag.pipeline import Pipeline
from rag.settings import DEFAULT_WORKSPACE, LLMSettings, Settings
from rag.storage.store import ChunkStore
from rag.workspaces import Workspaces

UPLOAD_TYPES = sorted(suffix.lstrip(".") for suffix in SUPPORTED_TYPES)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~&$=:\"'])")


@dataclass(frozen=True)
class Services:
    """The services one app process shares between its browser sessions, seen from one.

    Every workspace's pipeline (the models and stores are loaded once), and the workspace
    this session has chosen.
    """

    workspaces: Workspaces
    checks: Report  # rag doctor's checks, without the timed workload, run once at start
    models: ModelChoice  # the one model in memory, whichever workspace chose it
    workspace: str = DEFAULT_WORKSPACE

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Open the store and the models.

        Raises:
            StoreError: the store is unreachable or was built with another embedding model.
            ModelNotFoundError: the model file does not exist.
        """
        workspaces = Workspaces(settings)
        default = workspaces.default
        default.answerer.warm_up()  # under the app's spinner, not in the first question's time
        checks = diagnose(
            default.settings,
            None,
            embedder=default.embedder,
            store=default.store,
            llm=default.llm,
            workload=False,
        )
        return cls(workspaces, checks, ModelChoice(default.llm, settings.llm))

    def in_workspace(self, name: str) -> Services:
        """The same services, seen from workspace ``name`` (the default when it is gone).

        A workspace this process has open is taken as it is, without reading the store: a
        read waits while another process writes, and the page must not wait before it has
        handled what the user just did (an upload's submit).
        """
        if not self.workspaces.is_open(name) and name not in self.workspaces.names():
            name = DEFAULT_WORKSPACE
        return replace(self, workspace=name)

    @property
    def pipeline(self) -> Pipeline:
        """The chosen workspace's pipeline."""
        return self.workspaces.get(self.workspace)

    @property
    def settings(self) -> Settings:
        """The chosen workspace's settings (its collection, its uploads folder)."""
        return self.pipeline.settings

    @property
    def store(self) -> ChunkStore:
        """The chosen workspace's store."""
        return self.pipeline.store

    @property
    def answerer(self) -> Answerer:
        """The chosen workspace's answerer, with the workspace's model.

        Raises:
            ModelNotFoundError: the model's file is gone.
        """
        chosen = self.model_settings  # read once: it is a file
        return self.pipeline.answerer_with(chosen, self.models.model(chosen))

    @property
    def model_settings(self) -> LLMSettings:
        """The workspace's model: the one chosen for it in the app, else the settings' one."""
        return model_settings(self.settings)

    def choose_model(self, path: Path) -> None:
        """Answer in this workspace with the GGUF at ``path`` from now on (and next visit)."""
        remember_model(self.settings, str(path))

    @property
    def conversations(self) -> Conversations:
        """The chosen workspace's conversations."""
        return self.pipeline.conversations

    @property
    def llm(self) -> LLM:
        """The workspace's model: loaded once, the last one freed when another is chosen.

        Raises:
            ModelNotFoundError: the model's file is gone.
        """
        return self.models.model(self.model_settings)

    def model_name(self) -> str:
        """The model's name, or why a server cannot tell it (the page still opens)."""
        return name_of(self.llm)

    def device(self) -> str:
        """Where the model runs, for people."""
        if not isinstance(self.llm, LlamaCppLLM):
            return f"LLM server at {self.settings.llm.server.base_url}"
        layers = self.llm.n_gpu_layers
        return "CPU" if layers == 0 else f"GPU ({'all' if layers < 0 else layers} layers)"

    def store_location(self) -> str:
        """Which store answers, for people."""
        store = self.settings.store
        if store.mode == "server":
            server = f"{store.server.host}:{store.server.port}"
            return f"Chroma server {server}, collection {self.settings.collection_name!r}"
        return f"embedded Chroma at {self.settings.chroma_path}"


def plain(text: str) -> str:
    """Markdown that shows ``text`` literally: no HTML, links, images or formatting.

    Every markdown-active character is backslash-escaped (CommonMark shows an escaped ASCII
    punctuation character as itself); line breaks stay line breaks.
    """
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    return "  \n".join(escaped.splitlines())
