"""What a GGUF file says about its model, read from its header without loading the weights.

GGUF opens with key-value metadata (architecture, name, trained context, quantization, chat
template, ...) and a table of tensors (name, shape, type). Reading them takes milliseconds
even for a file of many gigabytes; the weights after them are never touched. Only the values
the product shows are kept; long arrays (the vocabulary) are skipped.

Limits: GGUF versions 2 and 3; a header past the bounds below is refused as not a model file.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from rag.errors import RagError
from rag.models.llm import named_instruction_tuned

_MAX_ENTRIES = 1_000_000  # keys or tensors: more is not a model file
_MAX_STRING = 64 * 2**20
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9
_KEPT = re.compile(
    r"general\.\w+|tokenizer\.chat_template|[\w.]+\.(?:context_length|block_count|"
    r"embedding_length|attention\.(?:head_count|head_count_kv|key_length|value_length))"
)
# llama.cpp's file types (general.file_type), by number.
_FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
}
_QUANT_IN_NAME = re.compile(r"(?i)(?:^|[-_.])((?:I?Q\d(?:_[0-9A-Z]+)*)|F16|BF16|F32)(?=[-_.]|$)")


class GGUFError(RagError):
    """A file that is not a GGUF model, or one whose header is damaged."""


@dataclass(frozen=True)
class ModelFacts:
    """What a GGUF says about its model, for people choosing one."""

    path: Path
    name: str  # general.name, else the file name
    architecture: str  # 'gemma3', 'qwen2', 'llama'
    size_bytes: int
    parameters: int  # counted from the tensor shapes
    quantization: str  # 'Q4_K_M', or '' when neither the header nor the name says
    context_length: int | None  # the context it was trained with
    chat_template: bool  # whether it carries a chat template
    kv_bytes_per_token: int | None  # its context's cache in llama.cpp (f16), when it says

    def memory_for(self, context: int) -> int:
        """Bytes the weights and a context of ``context`` tokens take (the cache in f16)."""
        return self.size_bytes + context * (self.kv_bytes_per_token or 0)

    @property
    def instruction_tuned(self) -> bool:
        """Whether the model was tuned to follow instructions (its name says so).

        A chat template alone does not tell: base models often ship their family's template.
        """
        return named_instruction_tuned(self.name) or named_instruction_tuned(self.path.stem)

    @property
    def parameters_label(self) -> str:
        """'270M', '1.5B'."""
        if self.parameters >= 10**9:
            return f"{self.parameters / 10**9:.1f}B"
        return f"{round(self.parameters / 10**6)}M"


def read_facts(path: Path) -> ModelFacts:
    """The facts of the GGUF at ``path``.

    Raises:
        GGUFError: it cannot be read, is not a GGUF file, or its header is damaged.
    """
    try:
        with path.open("rb") as file:
            if file.read(4) != b"GGUF":
                msg = f"{path} is not a GGUF model file (it does not start with 'GGUF')"
                raise GGUFError(msg)
            version, tensors, entries = struct.unpack("<IQQ", _exactly(file, 20))
            if version not in (2, 3) or tensors > _MAX_ENTRIES or entries > _MAX_ENTRIES:
                msg = f"{path}: a GGUF header this product cannot read (version {version})"
                raise GGUFError(msg)
            metadata: dict[str, Any] = {}
            for _ in range(entries):
                key = _string(file)
                value = _value(file, struct.unpack("<I", _exactly(file, 4))[0])
                if _KEPT.fullmatch(key):
                    metadata[key] = value
            parameters = 0
            for _ in range(tensors):
                _string(file)
                (dimensions,) = struct.unpack("<I", _exactly(file, 4))
                if dimensions > 8:
                    raise GGUFError(f"{path}: a damaged tensor table")
                shape = struct.unpack(f"<{dimensions}Q", _exactly(file, 8 * dimensions))
                _exactly(file, 12)  # its type and offset
                count = 1
                for length in shape:
                    count *= length
                parameters += count
        size = path.stat().st_size
    except (OSError, UnicodeDecodeError, struct.error) as error:
        msg = f"cannot read the GGUF file {path}: {error}"
        raise GGUFError(msg) from error
    architecture = str(metadata.get("general.architecture", ""))
    quantization = _FILE_TYPES.get(int(metadata.get("general.file_type", -1)), "")
    if not quantization:
        named = _QUANT_IN_NAME.search(path.stem)
        quantization = named.group(1).upper() if named else ""
    context = metadata.get(f"{architecture}.context_length")
    return ModelFacts(
        path=path,
        name=str(metadata.get("general.name") or path.stem),
        architecture=architecture,
        size_bytes=size,
        parameters=parameters,
        quantization=quantization,
        context_length=int(context) if context is not None else None,
        chat_template="tokenizer.chat_template" in metadata,
        kv_bytes_per_token=_kv_bytes_per_token(metadata, architecture),
    )


def _kv_bytes_per_token(metadata: dict[str, Any], architecture: str) -> int | None:
    """Keys and values of every layer for one token, 2 bytes each (llama.cpp's f16 cache)."""

    def number(key: str) -> int | None:
        value = metadata.get(f"{architecture}.{key}")
        return int(value) if isinstance(value, int | float) and value else None

    layers, heads = number("block_count"), number("attention.head_count")
    kv_heads = number("attention.head_count_kv") or heads  # a per-layer array: assume all
    width = number("embedding_length")
    head = width // heads if width and heads else None
    keys, values = number("attention.key_length") or head, number("attention.value_length") or head
    if not (layers and kv_heads and keys and values):
        return None
    return layers * kv_heads * (keys + values) * 2


def _exactly(file: BinaryIO, count: int) -> bytes:
    data = file.read(count)
    if len(data) != count:
        raise struct.error("the file ends inside its header")
    return data


def _string(file: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", _exactly(file, 8))
    if length > _MAX_STRING:
        raise struct.error(f"a string of {length} bytes in the header")
    return _exactly(file, length).decode("utf-8")


def _value(file: BinaryIO, kind: int) -> Any:
    """One metadata value; an array is skipped (None) but for its items' bytes."""
    if kind in _SCALARS:
        form = "<" + _SCALARS[kind]
        return struct.unpack(form, _exactly(file, struct.calcsize(form)))[0]
    if kind == _STRING:
        return _string(file)
    if kind == _ARRAY:
        item, count = struct.unpack("<IQ", _exactly(file, 12))
        if count > 100 * _MAX_ENTRIES:
            raise struct.error(f"an array of {count} items in the header")
        if item in _SCALARS:
            file.seek(count * struct.calcsize("<" + _SCALARS[item]), 1)
        else:
            for _ in range(count):
                _value(file, item)
        return None
    raise struct.error(f"an unknown value type {kind} in the header")
