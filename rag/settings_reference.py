"""The settings reference, ``docs/configuration.md``, made from the settings model itself.

``python -m rag.settings_reference > docs/configuration.md`` writes it; a test checks that the
file is what this makes, so the page cannot drift from the code. Every setting needs a
description (the test fails on one without).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from rag.settings import Settings

INTRODUCTION = """\
# Configuration

Every setting, with its default and its environment variable. This page is generated from
`rag/settings.py` (`python -m rag.settings_reference > docs/configuration.md`); a test
checks it is current.

Settings come from, highest first: the command line (`--data-dir`, `--workspace`, and the
flags each command lists), environment variables prefixed `RAG_` (nested with `__`:
`RAG_STORE__MODE=server`), a TOML file (`--settings FILE`, else `$RAG_SETTINGS_FILE`, else
`rag.toml` in the working directory), then the defaults below. A block in the file is a
TOML table: `[store.server]` holds `store.server.port`. An unknown key is an error, never
ignored, and a key from before a block existed says where it went
("llm.model_path is now llm.llama_cpp.model_path").

Unless given, the data dir is `data` beside the settings file in effect (a relative
`data_dir` in the file counts from the file; this repository's `rag.toml` keeps the store in
`data/`), else the user's data folder (`~/.local/share/rag` on Linux), so a command finds the
same store wherever it runs. A store remembers which embedding model built it; opening it
with another model is refused with a message that says to re-run the ingest with `--reset`.
"""


def settings_reference() -> str:
    """The whole page, in Markdown."""
    lines = [INTRODUCTION]
    for path, block in _blocks(Settings, ""):
        title = f"`[{path}]`" if path else "Top level"
        lines += [f"## {title}", "", _docstring(block), ""]
        lines += ["| setting | default | environment | what it does |", "|---|---|---|---|"]
        for name, field in block.model_fields.items():
            if _block_type(field.annotation) is not None:
                continue
            key = f"{path}.{name}" if path else name
            env = "RAG_" + key.upper().replace(".", "__")
            default = _shown(field.default)
            kind = _type_name(field.annotation)
            lines.append(
                f"| `{key}` ({kind}) | {default} | `{env}` | {_cell(field.description or '')} |"
            )
        lines.append("")
    return "\n".join(lines)


def undocumented() -> list[str]:
    """Settings without a description: each one a gap in the reference."""
    return [
        f"{path}.{name}" if path else name
        for path, block in _blocks(Settings, "")
        for name, field in block.model_fields.items()
        if _block_type(field.annotation) is None and not field.description
    ]


def _blocks(model: type[BaseModel], path: str) -> Iterator[tuple[str, type[BaseModel]]]:
    """This block and every block inside it, depth first, with its dotted path."""
    yield path, model
    for name, field in model.model_fields.items():
        inner = _block_type(field.annotation)
        if inner is not None:
            yield from _blocks(inner, f"{path}.{name}" if path else name)


def _block_type(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _docstring(block: type[BaseModel]) -> str:
    return " ".join((block.__doc__ or "").split())


def _type_name(annotation: Any) -> str:
    """'integer', 'path or unset', '"auto", "cpu"'..."""
    names = {
        int: "integer",
        float: "number",
        bool: "true/false",
        str: "text",
        Path: "path",
        SecretStr: "secret",
        type(None): "unset",
    }
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " or ".join(f'"{member.value}"' for member in annotation)
    if origin is typing.Literal:
        return " or ".join(f'"{value}"' for value in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(annotation))
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`"


def _cell(text: str) -> str:
    """Text that stays in one table cell."""
    return " ".join(text.split()).replace("|", "\\|")


if __name__ == "__main__":
    print(settings_reference(), end="")
