"""Files people upload (the chat app, the API): safe names, inside their folder, never lost.

A name is cut down to its last path part and to word characters, so an upload can never be
written outside its folder or become a hidden file; a name taken earlier in the same batch
gets a number. Limits: names longer than MAX_NAME characters are shortened; the folder's
file system decides what else a name may hold (case, Unicode normalization).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

MAX_NAME = 150  # characters of an upload's file name


def safe_file_name(name: str) -> str:
    """A file name that stays inside the uploads folder: no folders, no leading dots.

    Raises:
        ValueError: nothing usable is left of the name.
    """
    base = unicodedata.normalize("NFC", name.replace("\\", "/").rsplit("/", 1)[-1])
    cleaned = re.sub(r"[^\w .()-]", "_", base).strip(" .")
    if not cleaned or cleaned.startswith("."):
        msg = f"{name!r} is not a usable file name"
        raise ValueError(msg)
    stem, dot, suffix = cleaned.rpartition(".")
    if not dot or len(suffix) > 10:
        return cleaned[:MAX_NAME]
    return f"{stem[: MAX_NAME - len(suffix) - 1].rstrip(' .')}.{suffix}"  # the type stays


@dataclass(frozen=True)
class SavedUpload:
    """Where an upload went, and whether it replaced an earlier upload of the same name."""

    path: Path
    replaced: bool


def save_upload(folder: Path, name: str, data: bytes, taken: Collection[Path] = ()) -> SavedUpload:
    """Write an uploaded file under ``folder`` with a sanitized name.

    ``taken`` holds the paths of this batch's earlier uploads: a name that cleans to one of
    them gets a number ("report (2).txt") instead of overwriting it. A name already in the
    folder from an earlier batch is a new version of that document: it is replaced, and said.

    Raises:
        ValueError: the name is unusable or would lead outside ``folder``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    cleaned = safe_file_name(name)
    path = (folder / cleaned).resolve()
    number = 1
    while path in taken:
        number += 1
        stem, dot, suffix = cleaned.rpartition(".") if "." in cleaned else (cleaned, "", "")
        path = (folder / f"{stem} ({number}){dot}{suffix}").resolve()
    if path.parent != folder.resolve():
        msg = f"{name!r} would be written outside {folder}"
        raise ValueError(msg)
    replaced = path.exists()
    path.write_bytes(data)
    return SavedUpload(path, replaced)
