"""The models a person can choose: GGUF files on this machine, and what an LLM server lists.

GGUF files are looked for in ``llm.model_dirs``, beside the configured model, in the Hugging
Face hub cache and in LM Studio's models folder; each is described from its own header
(:mod:`rag.models.gguf`) without loading it. A model is chosen by path or by name (its file
name, with or without ``.gguf``, or the name in its header).

Limits: the folders are searched at most six levels deep; of a model split into several files
(``-00001-of-00003.gguf``) only the first is listed; nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ModelNotFoundError
from rag.models.gguf import GGUFError, ModelFacts, read_facts
from rag.models.llm import bundled_gguf_path
from rag.settings import LLMSettings

_DEPTH = 6
_LATER_SHARD = re.compile(r"-0*([2-9]|\d{2,})-of-\d+\.gguf$", re.I)


@dataclass(frozen=True)
class Found:
    """A GGUF found on this machine: its facts, or why they cannot be read."""

    path: Path
    facts: ModelFacts | None
    problem: str = ""


def usual_folders(settings: LLMSettings) -> list[Path]:
    """Where GGUF files are looked for, in order: the settings' folders, then the usual places."""
    home = Path.home()
    hf_home = Path(os.environ.get("HF_HOME") or home / ".cache" / "huggingface")
    hub = Path(os.environ.get("HF_HUB_CACHE") or hf_home / "hub")
    return [
        *settings.model_dirs,
        hub,
        home / ".lmstudio" / "models",
        home / ".cache" / "lm-studio" / "models",
    ]


def find_models(settings: LLMSettings) -> list[Found]:
    """Every GGUF in the usual places, the configured and the bundled one first, each once."""
    seen: set[Path] = set()
    found = []
    configured = settings.llama_cpp.model_path
    candidates = [configured] if configured else []
    with contextlib.suppress(ModelNotFoundError):  # a bare install has it; a trimmed one not
        candidates.append(bundled_gguf_path())
    for folder in usual_folders(settings):
        candidates += _ggufs(folder)
    for path in candidates:
        real = path.absolute()  # a link under another name is listed under that name too
        if real in seen or not path.is_file():
            continue
        seen.add(real)
        try:
            found.append(Found(path, read_facts(path)))
        except GGUFError as error:
            found.append(Found(path, None, str(error)))
    return found


def _ggufs(folder: Path, depth: int = 0) -> Iterator[Path]:
    """The GGUF files under ``folder``, sorted, the later shards of split models left out."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:  # not there, or not readable: nothing found there
        return
    for entry in entries:
        if entry.is_dir() and depth < _DEPTH:
            yield from _ggufs(entry, depth + 1)
        elif entry.suffix.lower() == ".gguf" and not _LATER_SHARD.search(entry.name):
            yield entry


def resolve_model(settings: LLMSettings, wanted: str) -> LLMSettings:
    """The settings with ``wanted`` as the model.

    ``wanted`` is a GGUF path or a found model's name; for an LLM server, one of its models.

    Raises:
        ModelNotFoundError: no file has that path and no found model that name (the error
            names the ones there are).
    """
    if settings.backend == "openai":
        server = settings.server.model_copy(update={"model": wanted})
        return settings.model_copy(update={"server": server})
    path = Path(wanted).expanduser()
    if not path.is_file():
        every = find_models(settings)
        found = [f for f in every if _named(f, wanted)]
        if len(found) != 1:
            names = ", ".join(sorted({f.path.name for f in every})) or "none"
            why = "several models have" if found else "no GGUF file has"
            msg = f"{why} the name or path {wanted!r}; the models found: {names}"
            raise ModelNotFoundError(msg)
        path = found[0].path
    llama_cpp = settings.llama_cpp.model_copy(update={"model_path": path})
    return settings.model_copy(update={"llama_cpp": llama_cpp})


def _named(found: Found, wanted: str) -> bool:
    wanted = wanted.lower()
    names = {found.path.name.lower(), found.path.stem.lower()}
    if found.facts:
        names.add(found.facts.name.lower())
    return wanted in names


def server_models(settings: LLMSettings) -> list[str]:
    """The models the configured LLM server lists.

    Raises:
        LLMError: the server cannot be reached or does not list its models.
    """
    from rag.models.server_llm import OpenAICompatibleLLM

    return OpenAICompatibleLLM(settings).models()
