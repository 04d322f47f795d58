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

import re
import sys
import threading
from collections.abc import Iterator
from functools import cache, cached_property
from typing import Any

from rag.errors import ModelNotFoundError
from rag.models.gguf import GGUFError, ModelFacts, read_facts
from rag.models.llm import (
    SERVER_CONTEXT,
    LLMError,
    Prompt,
    bundled_gguf_path,
    fitting_context,
    sampling,
    usable_cores,
)
from rag.settings import LLMSettings

_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"  # a source's number, as the model's tokens hold it


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
        self._closed = False
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

    @cached_property
    def facts(self) -> ModelFacts:
        """What the GGUF's header says of the model (read without loading it).

        Raises:
            GGUFError: the file is not a GGUF model, or its header is damaged.
        """
        return read_facts(self.model_path)

    @cached_property
    def context_size(self) -> int:
        """``llm.n_ctx``, else the model's trained context, capped to fit the memory here."""
        if self.settings.n_ctx:
            return self.settings.n_ctx
        trained = self.facts.context_length or SERVER_CONTEXT
        return fitting_context(trained, self.facts.kv_bytes_per_token)

    def load(self) -> None:
        """Load the GGUF now, so that the first question's timings count no loading."""
        _ = self.model

    @property
    def model(self) -> Any:
        """The loaded ``llama_cpp.Llama``."""
        with self._load_lock:
            if self._closed:
                msg = f"the model {self.name} was closed: another one was chosen; ask again"
                raise LLMError(msg)
            if self._model is None:
                self._model = self._open()
            return self._model

    def close(self) -> None:
        """Free the model once the answer it is writing, if any, is done; it is not reopened."""
        with self._lock, self._load_lock:
            self._closed = True
            if self._model is not None:
                self._model.close()
                self._model = None

    def _open(self) -> Any:
        _quiet_llama_log()
        return _copy_bias_llama()(
            model_path=str(self.model_path),
            n_ctx=self.context_size,
            n_batch=self.settings.llama_cpp.n_batch,
            n_threads=self.n_threads,
            n_threads_batch=self.n_threads,
            n_gpu_layers=self.n_gpu_layers,
            seed=self.settings.seed,
            verbose=False,
        )

    @property
    def has_chat_template(self) -> bool:
        """True for instruction-tuned models, whose GGUF carries a chat template (its header)."""
        return self.facts.chat_template

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

    @cached_property
    def instruction_tuned(self) -> bool:
        """``llm.instruction_tuned``, else what the GGUF's name says (base, if unreadable)."""
        if self.settings.instruction_tuned is not None:
            return self.settings.instruction_tuned
        try:
            return self.facts.instruction_tuned
        except GGUFError:
            return False

    def copy_bias_map(self, prompt: Prompt) -> dict[int, float]:
        """The prompt's copy bias for every token that occurs in its sources."""
        if not prompt.copy_from or not prompt.copy_bias:
            return {}
        ids = {token for text in prompt.copy_from for token in self.tokens(text)}
        return dict.fromkeys(sorted(ids), float(prompt.copy_bias))

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
        options = sampling(self.settings, prompt, self.chat)
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


def llama_system_info() -> str:
    """llama.cpp's own line of compiled-in CPU features and backends."""
    import llama_cpp

    return bytes(llama_cpp.llama_print_system_info()).decode(errors="replace").strip()


def llama_offload_supported() -> bool:
    """Whether this llama.cpp was built with GPU support."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())
