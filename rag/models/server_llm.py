"""A model served by any OpenAI-compatible server (llama.cpp's, vLLM), through the official client.

A request the server refuses for now (429, 5xx) or never gets is sent again with backoff,
``llm.server.max_retries`` times, before the error names the server and its answer. Text sent
to a server has special-token spellings (``<end_of_turn>``, ``<|im_start|>``, ``[INST]``…)
broken by an invisible word joiner, so document text never becomes a control token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cached_property
from typing import Any

from rag.models.llm import SERVER_CONTEXT, LLMError, Prompt, named_instruction_tuned, sampling
from rag.settings import LLMSettings


class OpenAICompatibleLLM:
    """Streams from an OpenAI-compatible server (llama.cpp's server, vLLM).

    Through the official ``openai`` client: its retries with backoff, timeouts, typed errors
    and event-stream parsing.
    """

    def __init__(self, settings: LLMSettings) -> None:
        import openai

        self.settings = settings
        server = settings.server
        self.base_url = server.base_url.rstrip("/")
        key = server.api_key.get_secret_value() if server.api_key else None
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=key or "no-key",  # the client wants one; a server without keys ignores it
            timeout=openai.Timeout(server.timeout_s, connect=10.0),
            max_retries=server.max_retries,
        )
        self.chat = True if settings.chat is None else settings.chat

    def count_tokens(self, text: str) -> int:
        """An upper estimate: the server's tokenizer is not at hand (about 4 chars a token)."""
        return len(text.encode()) // 3 + 1

    def load(self) -> None:
        """Nothing to load: the server holds the model."""

    @property
    def context_size(self) -> int:
        """``llm.n_ctx``, else 4096: a server does not say its context."""
        return self.settings.n_ctx or SERVER_CONTEXT

    @cached_property
    def instruction_tuned(self) -> bool:
        """``llm.instruction_tuned``, else what the model's name says (base, if untold)."""
        if self.settings.instruction_tuned is not None:
            return self.settings.instruction_tuned
        try:
            return named_instruction_tuned(self.name)
        except LLMError:
            return False

    @cached_property
    def name(self) -> str:
        """The model's name on the server: the setting, else the first one it lists."""
        if self.settings.server.model:
            return self.settings.server.model
        listed = self.models()
        if not listed:
            msg = f"the LLM server at {self.base_url} lists no models"
            raise LLMError(msg)
        return listed[0]

    def models(self) -> list[str]:
        """The names of the models the server lists.

        Raises:
            LLMError: the server cannot be reached or does not list them.
        """
        import openai

        try:
            return [str(model.id) for model in self.client.models.list().data]
        except openai.OpenAIError as error:
            msg = f"cannot list the models of the LLM server at {self.base_url}: {error}"
            raise LLMError(msg) from error

    def request(self, prompt: Prompt) -> dict[str, Any]:
        """The request's arguments for the client; text that spells a special token is defused.

        A server tokenizes the prompt with special tokens parsed (llama.cpp's server and vLLM
        do), so what the documents say must not spell one.
        """
        options = sampling(self.settings, prompt, self.chat)
        # Extensions beyond OpenAI's API: llama.cpp's server reads top_k and repeat_penalty,
        # vLLM repetition_penalty; servers default to penalties that would differ from ours.
        extra = {
            "top_k": options.pop("top_k"),
            "repeat_penalty": options.pop("repeat_penalty"),
            "repetition_penalty": self.settings.repeat_penalty,
        }
        request: dict[str, Any] = {**options, "model": self.name, "extra_body": extra}
        if self.chat:
            request["messages"] = [
                {**message, "content": defuse_special_tokens(message["content"])}
                for message in prompt.messages
            ]
        else:
            request["prompt"] = defuse_special_tokens(prompt.completion)
        return request

    def stream(self, prompt: Prompt) -> Iterator[str]:
        """Yield the answer piece by piece as the server sends it (server-sent events)."""
        import openai

        request = self.request(prompt)
        url = f"{self.base_url}/{'chat/completions' if self.chat else 'completions'}"
        try:
            if self.chat:
                events: Any = self.client.chat.completions.create(**request)
            else:
                events = self.client.completions.create(**request)
            with events:
                for event in events:
                    text = self._piece(url, event)
                    if text:
                        yield text
        except openai.APIStatusError as error:
            msg = f"the LLM server at {url} answered {error.status_code}: {error.message[:300]}"
            raise LLMError(msg) from error
        except openai.APIConnectionError as error:  # timeouts too
            msg = f"cannot reach the LLM server at {url}: {error.__cause__ or error}"
            raise LLMError(msg) from error
        except (openai.OpenAIError, ValueError) as error:  # JSON the client cannot read
            msg = f"the LLM server at {url} sent an event this client cannot read: {error}"
            raise LLMError(msg) from error

    def _piece(self, url: str, event: Any) -> str | None:
        """The text of one streamed event."""
        try:
            choice = event.choices[0]
            text = choice.delta.content if self.chat else choice.text
        except (IndexError, AttributeError, TypeError) as error:
            msg = f"the LLM server at {url} sent an event this client cannot read: {event!r:.200}"
            raise LLMError(msg) from error
        if text is not None and not isinstance(text, str):
            msg = f"the LLM server at {url} sent text that is not a string: {event!r:.200}"
            raise LLMError(msg)
        return text


# Spellings of special tokens across model families: <eos>, </s>, <start_of_turn>,
# <|im_start|>, <|eot_id|>, [INST], <<SYS>>, DeepSeek's <｜end▁of▁sentence｜>.
_SPECIAL_SPELLING = re.compile(
    r"<\|[^|<>\s]{1,64}\|>|</?[A-Za-z_][\w.:-]{0,63}>|\[/?INST\]|<</?SYS>>|<｜[^｜\s]{1,64}｜>"
)


_WORD_JOINER = "\u2060"  # invisible; splits the spelling so no tokenizer matches it


def defuse_special_tokens(text: str) -> str:
    """``text`` with every special-token spelling broken by an invisible word joiner."""
    return _SPECIAL_SPELLING.sub(lambda match: match[0][0] + _WORD_JOINER + match[0][1:], text)
