"""What the chat app needs from the rag package, built once per process, plus safe text and uploads.

The app adds no retrieval or generation of its own: it holds one :class:`Services` per set of
settings, shared by every browser session (the model and the store are loaded once), and only
turns documents' and the model's text into something Streamlit shows literally.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.answering import Answerer, Turn
from rag.doctor import Report, diagnose
from rag.llm import LLM, LlamaCppLLM, LLMError
from rag.loaders import SUPPORTED_TYPES
from rag.pipeline import Pipeline
from rag.settings import Settings
from rag.store import ChunkStore

MAX_NAME = 150  # characters of an upload's file name
UPLOAD_TYPES = sorted(suffix.lstrip(".") for suffix in SUPPORTED_TYPES)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~&$=:\"'])")


@dataclass
class Services:
    """The services one app process shares between its browser sessions."""

    settings: Settings
    pipeline: Pipeline
    checks: Report  # rag doctor's checks, without the timed workload, run once at start

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Open the store and the models.

        Raises:
            StoreError: the store is unreachable or was built with another embedding model.
            ModelNotFoundError: the model file does not exist.
        """
        pipeline = Pipeline(settings)
        pipeline.answerer.warm_up()  # under the app's spinner, not in the first question's time
        checks = diagnose(
            settings,
            None,
            embedder=pipeline.embedder,
            store=pipeline.store,
            llm=pipeline.llm,
            workload=False,
        )
        return cls(settings, pipeline, checks)

    @property
    def store(self) -> ChunkStore:
        """The store every session reads and writes."""
        return self.pipeline.store

    @property
    def answerer(self) -> Answerer:
        """The answerer every session asks."""
        return self.pipeline.answerer

    @property
    def llm(self) -> LLM:
        """The model, loaded once for every session."""
        return self.pipeline.llm

    def model_name(self) -> str:
        """The model's name, or why a server cannot tell it (the page still opens)."""
        try:
            return self.llm.name
        except LLMError as error:
            return f"unknown ({error})"

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
            return f"Chroma server {server}, collection {store.collection!r}"
        return f"embedded Chroma at {self.settings.chroma_path}"


def conversation(messages: list[dict[str, Any]]) -> list[Turn]:
    """The finished exchanges of a chat: a question directly followed by its finished answer.

    A question whose answer was interrupted (a click or a new question while it streamed)
    has none, or an unfinished one: it is left out, and no answer pairs with another question.
    """
    return [
        Turn(asked["text"], answered["text"])
        for asked, answered in itertools.pairwise(messages)
        if asked["role"] == "user"
        and answered["role"] == "assistant"
        and answered.get("answer") is not None
    ]


def plain(text: str) -> str:
    """Markdown that shows ``text`` literally: no HTML, links, images or formatting.

    Every markdown-active character is backslash-escaped (CommonMark shows an escaped ASCII
    punctuation character as itself); line breaks stay line breaks.
    """
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    return "  \n".join(escaped.splitlines())


def safe_file_name(name: str) -> str:
    """A file name that stays inside the uploads folder: no folders, no leading dots.

    Raises:
        ValueError: nothing usable is left of the name.
    """
    base = unicodedata.normalize("NFC", name.replace("\\", "/").rsplit("/", 1)[-1])
    cleaned = re.sub(r"[^\w .()-]", "_", base).strip(" .")
    if not cleaned or cleaned.startswith("."):
        msg = f"{name!r} is not a usable file name"
        raise ValueError(msg)
    stem, dot, suffix = cleaned.rpartition(".")
    if not dot or len(suffix) > 10:
        return cleaned[:MAX_NAME]
    return f"{stem[: MAX_NAME - len(suffix) - 1].rstrip(' .')}.{suffix}"  # the type stays


@dataclass(frozen=True)
class SavedUpload:
    """Where an upload went, and whether it replaced an earlier upload of the same name."""

    path: Path
    replaced: bool


def save_upload(folder: Path, name: str, data: bytes, taken: Collection[Path] = ()) -> SavedUpload:
    """Write an uploaded file under ``folder`` with a sanitized name.

    ``taken`` holds the paths of this batch's earlier uploads: a name that cleans to one of
    them gets a number ("report (2).txt") instead of overwriting it. A name already in the
    folder from an earlier batch is a new version of that document: it is replaced, and said.

    Raises:
        ValueError: the name is unusable or would lead outside ``folder``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    cleaned = safe_file_name(name)
    path = (folder / cleaned).resolve()
    number = 1
    while path in taken:
        number += 1
        stem, dot, suffix = cleaned.rpartition(".") if "." in cleaned else (cleaned, "", "")
        path = (folder / f"{stem} ({number}){dot}{suffix}").resolve()
    if path.parent != folder.resolve():
        msg = f"{name!r} would be written outside {folder}"
        raise ValueError(msg)
    replaced = path.exists()
    path.write_bytes(data)
    return SavedUpload(path, replaced)
