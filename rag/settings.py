"""Typed settings, in one place.

Precedence, highest first: values passed in code (the CLI's flags), environment variables
prefixed ``RAG_`` (nested with ``__``, e.g. ``RAG_STORE__MODE=server``), a TOML settings
file, then the defaults below. The file is ``--settings FILE``, else ``$RAG_SETTINGS_FILE``,
else ``rag.toml`` in the working directory when it exists. The data dir, unless given, is
``data`` beside that file, else the user's data folder (:func:`default_data_dir`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rag.errors import SettingsError

DEFAULT_SETTINGS_FILE = Path("rag.toml")


class _Block(BaseModel):
    """A block of settings: an unknown key is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


def _moved_to(block: str, moved: dict[str, str]) -> Callable[[Any], Any]:
    """A validator that names the new place of a setting that moved into a backend's block."""

    def check(values: Any) -> Any:
        if isinstance(values, dict):
            for key, place in moved.items():
                if key in values:
                    new = place if "." in place else f"{place}.{key}"
                    msg = f"{block}.{key} is now {block}.{new}"
                    raise ValueError(msg)
        return values

    return check


class QuotePolicy(StrEnum):
    """When a quote of the passage matching the question best replaces the model's text."""

    OFF_PASSAGE = "off_passage"  # when that passage does not hold the model's answer
    UNSUPPORTED = "unsupported"  # when no cited source holds it
    NEVER = "never"  # the model's text stands, flagged when unsupported


class EmbeddingSettings(_Block):
    """Which sentence-transformers model embeds chunks and queries, and how."""

    model_path: Path | None = Field(
        None, description="Local model folder; unset uses the bundled all-MiniLM-L6-v2."
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="'auto' picks the GPU when there is one."
    )
    batch_size: int | None = Field(
        None, ge=1, description="Chunks per forward pass; unset: 16 on a CPU, 256 on a GPU."
    )
    precision: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="'auto': float16 on a GPU, bfloat16 on a CPU that computes it natively "
        "(AVX512-BF16 or AMX), else float32. Vectors agree with float32 to a cosine of 0.9999.",
    )


class ChunkingSettings(_Block):
    """Chunk sizes, counted in the embedding model's own tokens."""

    max_tokens: int | None = Field(
        None,
        ge=16,
        description="Largest chunk; unset means all the embedder reads. Never more than that.",
    )
    overlap_tokens: int = Field(
        32, ge=0, description="Text repeated from the previous chunk when a passage is split."
    )


class EmbeddedStoreSettings(_Block):
    """Embedded Chroma in the data dir (``store.mode = "embedded"``)."""

    lock_timeout_s: float = Field(
        3600.0, gt=0, description="How long a writer waits for another writer to finish."
    )


class StoreServerSettings(_Block):
    """A Chroma server, ``chroma run`` (``store.mode = "server"``)."""

    host: str = Field("127.0.0.1", description="Chroma server host.")
    port: int = Field(8000, ge=1, le=65535, description="Chroma server port.")


class HnswSettings(_Block):
    """Chroma's HNSW vector index: recall against speed and memory as the store grows."""

    ef_search: int = Field(
        1600,
        ge=1,
        description="Neighbours explored per query: more finds the true nearest more often, "
        "slower (bench_scale: at 100,000 chunks recall@10 0.81 at 100, 0.96 at 1,600, for "
        "+5 ms a query). Applies to existing stores too, from the next process that opens "
        "the store (a Chroma server: after it restarts); a process keeps the index it loaded.",
    )
    ef_construction: int = Field(
        100,
        ge=1,
        description="Neighbours explored while adding vectors: a better graph, a slower ingest. "
        "Fixed when a collection is created (rebuild with `rag ingest --reset`).",
    )
    max_neighbors: int = Field(
        16,
        ge=2,
        description="Links per vector (HNSW's M): better recall, more memory. Fixed when a "
        "collection is created.",
    )


class StoreSettings(_Block):
    """Where chunks are stored: embedded Chroma under the data dir, or a Chroma server."""

    mode: Literal["embedded", "server"] = Field(
        "embedded",
        description="'embedded': Chroma in the data dir; 'server': a Chroma server "
        "(`chroma run`), [store.server].",
    )
    collection: str = Field(
        "documents",
        description="The Chroma collection of the default workspace; another workspace's "
        "is this name, '__' and the workspace's.",
    )
    hnsw: HnswSettings = HnswSettings()
    embedded: EmbeddedStoreSettings = EmbeddedStoreSettings()
    server: StoreServerSettings = StoreServerSettings()

    _moved = model_validator(mode="before")(
        _moved_to("store", {"host": "server", "port": "server", "lock_timeout_s": "embedded"})
    )


class IngestSettings(_Block):
    """Limits on what ingestion accepts."""

    max_file_mb: float = Field(100.0, gt=0, description="Larger files are skipped and reported.")
    group_chunks: int = Field(
        512, ge=1, description="Chunks embedded and written together; what a crash can lose."
    )
    watch_debounce_s: float = Field(
        1.0, ge=0, description="Quiet time after a change before --watch syncs."
    )
    ocr: bool = Field(
        True,
        description="Read images (png, jpg, tiff) and scanned PDF pages by OCR, offline on the "
        "CPU (seconds a page). Off: images fail and scanned pages stay empty.",
    )
    prepare_workers: int = Field(
        0,
        ge=0,
        description="Processes that load and chunk files beside the embedding and the writes, "
        "for a GPU machine's cores (0: in line). Each starts by importing the program's main "
        "module, as multiprocessing does: a script that ingests must guard its entry point "
        "with `if __name__ == '__main__':`.",
    )
    embedding_process: Literal["auto", "own", "this"] = Field(
        "auto",
        description="Where an ingest runs the embedding model: 'own': in a process of its own, "
        "fed while this one writes (Chroma's add holds Python's lock and would stall a model "
        "here), once it has loaded; 'this': here; 'auto': its own on a GPU, for a sync of more "
        "than 4,096 chunks. Questions are always embedded here.",
    )


class RetrievalSettings(_Block):
    """How chunks are found for a question."""

    k: int = Field(4, ge=1, description="Chunks returned.")
    hybrid: bool = Field(True, description="Fuse BM25 keyword ranking with the dense ranking.")
    candidates: int = Field(24, ge=1, description="Chunks each ranking contributes to fusion.")
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant.")
    keyword_weight: float = Field(1.0, ge=0, description="Weight of the BM25 ranking in fusion.")
    keyword_budget: int = Field(
        10_000,
        ge=1,
        description="Most postings (a chunk holding a word) one keyword search scores: past it "
        "the question's commonest words are left out, as they weigh least in BM25. Bounds a "
        "search's time at any size (~1.5 µs a posting).",
    )
    min_similarity: float = Field(
        0.35,
        ge=-1,
        le=1,
        description="Relevance floor: a chunk less similar to the question never counts. On the "
        "pydoc eval, questions the corpus answers reach 0.52 or more, the others 0.29 at most.",
    )
    min_sentence_similarity: float = Field(
        0.5,
        ge=-1,
        le=1,
        description="A keyword match under the relevance floor still counts when one of its "
        "sentence pairs is this similar to the question. On the public evals, questions the "
        "documents do not answer reach 0.44 at most.",
    )
    min_similarity_unknown_term: float = Field(
        0.55,
        ge=-1,
        le=1,
        description="Relevance floor for a question naming a term no document holds (a name or "
        "identifier such as 'xgboost'): below it, the question is refused as not covered. On "
        "the public evals, such questions reach 0.52 at most (bench/realfolder's zlib).",
    )
    duplicate_similarity: float = Field(
        0.97, gt=0, le=1, description="Chunks this similar to a better one are dropped."
    )
    sentence_rerank: bool = Field(
        True,
        description="Order the top k by their best-matching sentences too, so a chunk that "
        "answers in one sentence among others comes first.",
    )
    sentence_keyword_weight: float = Field(
        0.3,
        ge=0,
        description="Sentence ranking: weight of the share of the question's rare words a "
        "sentence pair holds, added to its similarity (0: similarity only).",
    )
    read_on: bool = Field(
        True,
        description="A chunk with one of its two best-matching sentence pairs at its end is "
        "continued with the next chunk of the same page: what answers (a table, a list) often "
        "follows the sentence that introduces it. Needs sentence_rerank.",
    )
    mmr: bool = Field(False, description="Maximal marginal relevance: trade rank for variety.")
    mmr_lambda: float = Field(0.7, ge=0, le=1, description="MMR: 1 is relevance only.")


class AnswerSettings(_Block):
    """How answers are grounded in the retrieved chunks."""

    excerpt_windows: int | None = Field(
        None,
        ge=0,
        description="Show the model each chunk's best-matching sentence pairs (this many, "
        "omissions marked with '…') instead of the whole chunk. 0: whole chunks. Unset: "
        "follows the model: 2 for base models, 0 for instruction-tuned ones.",
    )
    min_support: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of an answer's words its cited sources must hold; below, the "
        "answer is flagged as unsupported.",
    )
    min_attribution: float = Field(
        0.3,
        ge=0,
        le=1,
        description="An answer without [n] markers cites the best-ranked source holding at "
        "least this share of its words.",
    )
    quote: QuotePolicy | None = Field(
        None,
        description="When to answer with a quote of the passage (sentence pair) that matches "
        "the question best instead of the model's text, which is kept aside: 'unsupported', "
        "when no cited source holds the model's answer; 'off_passage', also when that passage "
        "does not hold it (small models copy a neighbouring sentence); 'never'. Unset: follows "
        "the model: 'off_passage' for base models, 'unsupported' for instruction-tuned ones.",
    )
    quote_over_refusal: float = Field(
        0.6,
        description="When the model says it does not know but a passage matches the question "
        "at least this well (similarity plus keyword share, as sentences are ranked), that "
        "passage is quoted instead. On the public evals, questions the documents answer reach "
        "0.62 or more, the others 0.40 at most. Above 2: never.",
    )
    quote_chars: int = Field(400, ge=40, description="Longest quoted passage, in characters.")
    rewrite_follow_ups: bool = Field(
        True,
        description="Rewrite a chat's follow-up ('what does it return?') into a question that "
        "stands alone, the last question's subject put in, before retrieval. Off: the earlier "
        "questions (history_turns) join the follow-up's search instead.",
    )
    history_turns: int = Field(
        1,
        ge=0,
        description="With rewrite_follow_ups off: earlier questions of a chat that join a "
        "follow-up's retrieval.",
    )
    max_question_chars: int = Field(2000, ge=1, description="Longer questions are refused.")


class LlamaCppSettings(_Block):
    """The model run in process by llama.cpp (``llm.backend = "llama_cpp"``)."""

    model_path: Path | None = Field(
        None, description="A GGUF file; unset uses the bundled Gemma 3 270M (Q4_K_M)."
    )
    n_batch: int = Field(512, ge=1, description="Prompt tokens evaluated per step.")
    n_threads: int | None = Field(None, ge=1, description="Unset: every core this process may use.")
    n_gpu_layers: int | None = Field(
        None, description="Unset: all layers when llama.cpp was built with GPU support, else 0."
    )
    copy_bias: float | None = Field(
        None,
        ge=0,
        description="Logit bonus for tokens that occur in the sources: small models then quote "
        "the sources instead of inventing. 0 turns it off. Unset: follows the model: 4 for "
        "base models, 0 for instruction-tuned ones.",
    )


class LLMServerSettings(_Block):
    """Any OpenAI-compatible server: llama.cpp's, vLLM (``llm.backend = "openai"``)."""

    base_url: str = Field("http://127.0.0.1:8080/v1", description="The server's OpenAI API root.")
    api_key: SecretStr | None = Field(
        None, description="Bearer token, when the server wants one; never printed."
    )
    model: str | None = Field(
        None, description="Model name on the server; unset: the first one it lists."
    )
    timeout_s: float = Field(600.0, gt=0, description="Longest wait for a server's answer.")
    max_retries: int = Field(
        2,
        ge=0,
        description="Retries of a request the server refused for now (429, 5xx) or never got, "
        "with backoff, before an error.",
    )


class LLMSettings(_Block):
    """The model that writes answers, and how it samples, whichever backend runs it."""

    model_dirs: list[Path] = Field(
        default_factory=list,
        description="Folders where `rag models` and the app look for GGUF files, besides the "
        "Hugging Face hub cache and LM Studio's models folder.",
    )
    backend: Literal["llama_cpp", "openai"] = Field(
        "llama_cpp", description="In process, or any OpenAI-compatible server (llama.cpp, vLLM)."
    )
    instruction_tuned: bool | None = Field(
        None,
        description="Whether the model follows instructions (the answer rules follow it: "
        "answer.quote, answer.excerpt_windows, llama_cpp.copy_bias). Unset: its name says "
        "('Instruct', '-it', 'Chat'), from the GGUF's header or the server's model name.",
    )
    chat: bool | None = Field(
        None,
        description="Send chat messages (true) or a plain completion prompt (false). Unset: "
        "in process, chat when the GGUF has a chat template; on a server, chat.",
    )
    n_ctx: int | None = Field(
        None,
        ge=256,
        description="Context window in tokens: the prompt and answer fit in it. Unset: the "
        "model's trained context, capped so its cache takes at most a quarter of the memory "
        "available (a server's: 4096).",
    )
    temperature: float = Field(0.0, ge=0, description="0 (greedy): answers stick to the sources.")
    top_p: float = Field(
        0.9, gt=0, le=1, description="Nucleus sampling, when temperature is above 0."
    )
    top_k: int = Field(
        40,
        ge=0,
        description="Sample among this many likeliest tokens (0: all), when temperature is "
        "above 0.",
    )
    repeat_penalty: float = Field(
        1.0, ge=1, description="1 (none): a grounded answer repeats the sources' words."
    )
    max_tokens: int = Field(256, ge=1, description="Longest answer, in tokens.")
    stop: list[str] = Field(
        default_factory=list,
        description="Generation also stops at these (completion prompts bring their own).",
    )
    seed: int = Field(0, description="Sampling seed: the same question gets the same answer.")
    llama_cpp: LlamaCppSettings = LlamaCppSettings()
    server: LLMServerSettings = LLMServerSettings()

    _moved = model_validator(mode="before")(
        _moved_to(
            "llm",
            {
                "model_path": "llama_cpp",
                "n_batch": "llama_cpp",
                "n_threads": "llama_cpp",
                "n_gpu_layers": "llama_cpp",
                "copy_bias": "llama_cpp",
                "base_url": "server",
                "api_key": "server",
                "server_model": "server.model",
                "timeout_s": "server",
                "max_retries": "server",
            },
        )
    )


class UISettings(_Block):
    """The chat app: where it listens, and what it accepts."""

    host: str = Field("127.0.0.1", description="Address the app listens on: this machine only.")
    port: int = Field(8501, ge=1, le=65535, description="Port the app listens on.")
    max_upload_mb: int = Field(50, ge=1, description="Largest file the app accepts.")


class ServeSettings(_Block):
    """``rag serve``: the OpenAI-compatible HTTP API."""

    host: str = Field(
        "127.0.0.1", description="Address the API listens on; beyond loopback it needs api_key."
    )
    port: int = Field(8001, ge=1, le=65535, description="Port the API listens on.")
    api_key: SecretStr | None = Field(
        None, description="Bearer token every /v1 request must carry; never printed or logged."
    )
    max_queue: int = Field(
        8,
        ge=0,
        description="Questions that may wait for the model; past them, 429 with Retry-After "
        "(each worker has its own queue).",
    )
    workers: int = Field(
        1,
        ge=1,
        description="Processes serving the API on one port, each with its own models (memory "
        "and cores for each); more answer more questions at once where there are cores.",
    )


class WebSettings(_Block):
    """``rag ingest URL``: web pages and sitemaps, fetched within bounds."""

    max_page_mb: float = Field(
        5.0, gt=0, description="A larger page or sitemap is refused; its last good version stays."
    )
    timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="A page not wholly received in this time is refused (a slow server too); "
        "its last good version stays.",
    )
    max_pages: int = Field(
        1000, ge=1, description="Pages read from one sitemap at most (its sitemaps included)."
    )
    user_agent: str = Field(
        "rag-local-documents/0.1",
        description="The name sent to sites; their robots.txt rules for it are obeyed.",
    )


class MCPSettings(_Block):
    """``rag mcp``: the Model Context Protocol server, for assistants in other apps."""

    host: str = Field(
        "127.0.0.1",
        description="Address the streamable HTTP transport listens on; beyond loopback it "
        "needs serve.api_key, which every request must then carry as a bearer token.",
    )
    port: int = Field(8002, ge=1, le=65535, description="Port of the streamable HTTP transport.")


DEFAULT_WORKSPACE = "default"
WORKSPACE_NAME = r"^[a-z0-9][a-z0-9_-]{0,39}$"  # lowercase, digits, '-' and '_'; 40 at most
WORKSPACE_SEPARATOR = "__"  # between the collection's name and a workspace's


class Settings(BaseSettings):
    """All settings of the application."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Field(
        Path("data"),
        description="Home of the embedded store and uploads. Unset: 'data' beside the settings "
        "file in effect, else the user's data folder (~/.local/share/rag on Linux); relative in "
        "a settings file: to that file.",
    )
    workspace: str = Field(
        DEFAULT_WORKSPACE,
        pattern=WORKSPACE_NAME,
        description="The named set of documents to use (rag.workspaces); 'default' is the store "
        "as it was before workspaces.",
    )
    embedding: EmbeddingSettings = EmbeddingSettings()
    chunking: ChunkingSettings = ChunkingSettings()
    store: StoreSettings = StoreSettings()
    ingest: IngestSettings = IngestSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    answer: AnswerSettings = AnswerSettings()
    llm: LLMSettings = LLMSettings()
    ui: UISettings = UISettings()
    web: WebSettings = WebSettings()
    serve: ServeSettings = ServeSettings()
    mcp: MCPSettings = MCPSettings()

    @property
    def chroma_path(self) -> Path:
        """Folder of the embedded Chroma store."""
        return self.data_dir / "chroma"

    @property
    def collection_name(self) -> str:
        """The workspace's Chroma collection: ``store.collection`` for the default one."""
        if self.workspace == DEFAULT_WORKSPACE:
            return self.store.collection
        return f"{self.store.collection}{WORKSPACE_SEPARATOR}{self.workspace}"

    @property
    def workspace_dir(self) -> Path:
        """Folder of a workspace's own files (the default one's are in the data dir itself)."""
        if self.workspace == DEFAULT_WORKSPACE:
            return self.data_dir
        return self.data_dir / "workspaces" / self.workspace

    @property
    def uploads_dir(self) -> Path:
        """Folder of the files uploaded to the workspace (the chat app, the API)."""
        return self.workspace_dir / "uploads"

    def keywords_path(self, collection: str | None = None) -> Path:
        """The keyword index of a collection (this workspace's when None).

        Beside an embedded store; for a Chroma server's, on this machine, a folder per server.
        """
        folder = self.data_dir / "keywords"
        if self.store.mode == "server":
            folder /= f"{self.store.server.host}_{self.store.server.port}"
        return folder / f"{collection or self.collection_name}.sqlite3"

    @property
    def conversations_path(self) -> Path:
        """The file of every workspace's conversations (the app's and ``rag chat``'s)."""
        return self.data_dir / "conversations.sqlite3"

    @property
    def lock_dir(self) -> Path:
        """Folder of the locks and the write generation that guard the embedded store."""
        return self.data_dir / "chroma.lock"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Add the TOML file below the environment."""
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(settings_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from ``overrides``, the environment and the settings file.

    Raises:
        SettingsError: a settings file was named but does not exist, or a value is invalid.
    """
    named = settings_file or os.environ.get("RAG_SETTINGS_FILE")
    path = Path(named) if named else DEFAULT_SETTINGS_FILE
    if named and not path.is_file():
        msg = f"settings file {path} does not exist"
        raise SettingsError(msg)
    in_effect = path.resolve() if path.is_file() else None

    class FileSettings(Settings):
        model_config = SettingsConfigDict(toml_file=in_effect)

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = FileSettings(**given)
    except ValueError as error:  # pydantic's ValidationError, TOML syntax errors
        where = f" (settings file {path})" if in_effect else ""
        msg = f"invalid settings{where}: {error}"
        raise SettingsError(msg) from error
    if "data_dir" in given or os.environ.get("RAG_DATA_DIR"):
        return settings  # as given: relative to where the command runs
    return settings.model_copy(update={"data_dir": default_data_dir(settings, in_effect)})


def default_data_dir(settings: Settings, settings_file: Path | None) -> Path:
    """The data dir when neither ``--data-dir`` nor ``$RAG_DATA_DIR`` names one.

    The settings file's ``data_dir``, relative to that file; else ``data`` beside the settings
    file in effect; else the user's data folder (``~/.local/share/rag`` on Linux), so that a
    command finds the same store wherever it runs.
    """
    if settings_file is None:
        import platformdirs

        return Path(platformdirs.user_data_dir("rag", appauthor=False))
    if "data_dir" in settings.model_fields_set:
        return settings_file.parent / settings.data_dir  # an absolute one stays as it is
    return settings_file.parent / "data"
