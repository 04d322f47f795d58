"""Stand-ins for the model that tests and benchmarks share: each keeps the LLM interface.

``WrappedLLM`` and its kin wrap the real model and only watch or adjust its requests;
``ScriptedLLM`` writes given pieces, for the answering logic alone with exact inputs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

from rag.models.llm import LLM, Prompt


class WrappedLLM:
    """The real model, behind the LLM interface: subclasses watch or change its requests."""

    def __init__(self, llm: LLM, context_size: int | None = None) -> None:
        self.llm = llm
        self.name = llm.name
        self.chat = llm.chat
        self.context_size = context_size or llm.context_size  # smaller: to fill it in a test
        self.instruction_tuned = llm.instruction_tuned

    def count_tokens(self, text: str) -> int:
        return self.llm.count_tokens(text)

    def load(self) -> None:
        self.llm.load()

    def stream(self, prompt: Prompt) -> Iterator[str]:
        return self.llm.stream(prompt)


class CountingLLM(WrappedLLM):
    """The real model, counting the requests it gets."""

    def __init__(self, llm: LLM, context_size: int | None = None) -> None:
        super().__init__(llm, context_size)
        self.requests: list[Prompt] = []

    def stream(self, prompt: Prompt) -> Iterator[str]:
        self.requests.append(prompt)
        return self.llm.stream(prompt)


class PieceCountingLLM(CountingLLM):
    """The real model, counting the pieces it writes."""

    pieces = 0

    def stream(self, prompt: Prompt) -> Iterator[str]:
        for piece in self.llm.stream(prompt):
            self.pieces += 1
            yield piece


class NoStopLLM(WrappedLLM):
    """The real model without the prompt's line-end stop: generations long enough to time.

    ``arrivals`` holds when each piece of the last generation came, for its speed apart from
    what the answerer does with the pieces.
    """

    def __init__(self, llm: LLM) -> None:
        super().__init__(llm)
        self.arrivals: list[float] = []

    def stream(self, prompt: Prompt) -> Iterator[str]:
        self.arrivals = []
        for piece in self.llm.stream(replace(prompt, completion_stop=())):
            self.arrivals.append(time.perf_counter())
            yield piece


class ScriptedLLM:
    """Writes the pieces it is given: the answering logic alone, with exact inputs."""

    name = "scripted"
    chat = False
    context_size = 4096
    instruction_tuned = False

    def __init__(self, *pieces: str) -> None:
        self.pieces = pieces
        self.closed = False

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def load(self) -> None:
        pass

    def stream(self, prompt: Prompt) -> Iterator[str]:
        try:
            yield from self.pieces
        finally:
            self.closed = True
