"""One in-process model at a time for a process that lets people choose (the chat app).

Asking for another model frees the one loaded before (once the answer it is writing is done),
so memory holds one model however many are chosen in turn; a workspace's choice is remembered
in its folder (``chosen-model.txt``) for the next visit. Limits: two sessions that alternate
between two models load each in turn; a question asked of a model just freed is an error that
says to ask again.
"""

from __future__ import annotations

import threading
from pathlib import Path

from rag.errors import RagError
from rag.models.catalog import resolve_model
from rag.models.llm import LLM, bundled_gguf_path, make_llm
from rag.settings import LLMSettings, Settings

_CHOICE_FILE = "chosen-model.txt"


class ModelChoice:
    """The model last asked for, loaded once; the one before it closed."""

    def __init__(self, first: LLM, settings: LLMSettings) -> None:
        self._lock = threading.Lock()
        self._current = first
        self._settings = settings  # of the current model

    def model(self, settings: LLMSettings) -> LLM:
        """The model ``settings`` name, loading it (and freeing the last) if it is another.

        Raises:
            ModelNotFoundError: the GGUF file does not exist.
        """
        with self._lock:
            if _same_model(settings, self._settings):
                return self._current
            chosen = make_llm(settings)
            close = getattr(self._current, "close", None)
            if close is not None:
                close()
            self._current, self._settings = chosen, settings
            return chosen


def _same_model(one: LLMSettings, other: LLMSettings) -> bool:
    """Whether both name one model (the bundled one by its path or by leaving it unset)."""

    def named(settings: LLMSettings) -> tuple[str, Path | None, str | None]:
        path = settings.llama_cpp.model_path
        if settings.backend == "llama_cpp" and path is None:
            path = bundled_gguf_path()
        return settings.backend, path and path.absolute(), settings.server.model

    return named(one) == named(other)


def remembered_model(settings: Settings) -> str | None:
    """The model chosen for the workspace in the app, if one was."""
    try:
        return (settings.workspace_dir / _CHOICE_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def remember_model(settings: Settings, wanted: str) -> None:
    """Keep ``wanted`` as the workspace's model for the next visit."""
    settings.workspace_dir.mkdir(parents=True, exist_ok=True)
    (settings.workspace_dir / _CHOICE_FILE).write_text(wanted, encoding="utf-8")


def model_settings(settings: Settings) -> LLMSettings:
    """The LLM settings of the workspace's remembered model, else the settings' own.

    A remembered model that is gone (its file deleted) falls back to the settings' model.
    """
    wanted = remembered_model(settings)
    if wanted is None:
        return settings.llm
    try:
        return resolve_model(settings.llm, wanted)
    except RagError:
        return settings.llm
