"""Find the files to ingest under the paths a user gives, and what to report about the rest.

A folder is synced whole: what is stored for it and no longer on disk gets removed. A single
file is synced alone, so ingesting one file never removes its neighbours. A folder or entry
that cannot be listed or stat'ed (permissions, a flaky network mount, EIO) is reported and
marked unknown: its files may still exist, so their stored chunks are kept. A file of a type
the loaders do not list (README, COPYING, .rst, .log) is taken when its first 8 KB are text;
binary files are skipped with their kind ("binary (PNG image)"). Hidden entries (names
starting with ".") are ignored; symlinks are followed, except back into a folder being walked
(a loop).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from rag.documents.loaders import SNIFF_BYTES, SUPPORTED_TYPES, binary_kind


@dataclass(frozen=True)
class SourceFile:
    """A file to ingest: ``source`` is its POSIX path relative to ``root``."""

    root: str
    source: str
    path: Path


@dataclass(frozen=True)
class Scope:
    """What one given path covers: a whole folder, or the named files in it."""

    root: str
    sources: frozenset[str] | None = None  # None: everything under root

    def covers(self, root: str, source: str) -> bool:
        """True when (root, source) belongs to this scope."""
        return root == self.root and (self.sources is None or source in self.sources)


@dataclass
class ScanResult:
    """Files found, and the paths skipped (binary) or failed, each with the reason."""

    files: list[SourceFile] = field(default_factory=list)
    scopes: list[Scope] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    unknown: set[tuple[str, str]] = field(default_factory=set)  # (root, source or folder)
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def unseen(self, root: str, source: str) -> bool:
        """True when ``source`` lies in a folder or entry the scan could not read.

        Such a file may well still exist: what the store holds for it must stay.
        """
        parts = source.split("/")
        prefixes = {"/".join(parts[:n]) for n in range(len(parts) + 1)}
        return any((root, prefix) in self.unknown for prefix in prefixes)

    def add(self, file: SourceFile) -> None:
        """Take ``file`` unless it was found already (a file named twice, or in a named folder)."""
        if (file.root, file.source) not in self._seen:
            self._seen.add((file.root, file.source))
            self.files.append(file)


def scan(paths: list[Path], max_bytes: int, exclude: tuple[Path, ...] = ()) -> ScanResult:
    """Walk ``paths``; ``exclude`` holds folders never to enter (the store itself)."""
    result = ScanResult()
    excluded = {path.resolve() for path in exclude}
    for given in paths:
        try:
            resolved = given.resolve(strict=True)
        except (OSError, RuntimeError) as error:
            if isinstance(error, FileNotFoundError) and not os.path.lexists(given):
                result.failed.append((given, "no such file or folder"))
            else:
                result.failed.append((given, _reason(error)))
            continue
        if resolved.is_dir():
            root = str(resolved)
            result.scopes.append(Scope(root))
            _walk(resolved, root, "", {_identity(resolved)}, excluded, max_bytes, result)
        else:
            root = str(given.absolute().parent.resolve())
            result.scopes.append(Scope(root, frozenset({given.name})))
            _add_file(given, root, given.name, max_bytes, result)
    return result


def _walk(
    folder: Path,
    root: str,
    prefix: str,
    ancestors: set[tuple[int, int]],
    excluded: set[Path],
    max_bytes: int,
    result: ScanResult,
) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        result.failed.append((folder, _reason(error)))
        result.unknown.add((root, prefix.rstrip("/")))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        source = prefix + entry.name
        try:
            info = path.stat()  # follows symlinks
        except (OSError, RuntimeError) as error:
            result.failed.append((path, _reason(error)))
            if not isinstance(error, FileNotFoundError):  # a broken symlink is gone for good
                result.unknown.add((root, source))
            continue
        if stat.S_ISDIR(info.st_mode):
            identity = (info.st_dev, info.st_ino)
            if identity in ancestors:
                result.failed.append((path, "symlink loop: links back to a folder above it"))
            elif path.resolve() not in excluded:
                _walk(path, root, source + "/", ancestors | {identity}, excluded, max_bytes, result)
        else:
            _add_file(path, root, source, max_bytes, result)


def _add_file(path: Path, root: str, source: str, max_bytes: int, result: ScanResult) -> None:
    try:
        info = path.stat()
    except (OSError, RuntimeError) as error:
        result.failed.append((path, _reason(error)))
        if not isinstance(error, FileNotFoundError):
            result.unknown.add((root, source))
        return
    if not stat.S_ISREG(info.st_mode):
        result.failed.append((path, "not a regular file"))
        return
    if path.suffix.lower() not in SUPPORTED_TYPES:
        try:
            with path.open("rb") as file:
                kind = binary_kind(path, file.read(SNIFF_BYTES))
        except OSError as error:
            result.failed.append((path, _reason(error)))
            result.unknown.add((root, source))
            return
        if kind is not None:
            result.skipped.append((path, kind))
            return
    if info.st_size > max_bytes:
        limit_mb = max_bytes / 2**20
        result.failed.append(
            (path, f"{info.st_size / 2**20:.1f} MB is over the {limit_mb:g} MB size limit")
        )
    else:
        result.add(SourceFile(root, source, path))


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(name: object) -> str:
    """A file name on one line, showing what it holds.

    Control characters (a newline) and bidirectional overrides (which make 'evil\u202etxt.md'
    read 'evildm.txt') are shown as escapes.
    """
    return _UNPRINTABLE.sub(lambda match: ascii(match[0])[1:-1], str(name))


def _identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


def _reason(error: OSError | RuntimeError) -> str:
    if isinstance(error, RuntimeError) or getattr(error, "errno", None) == errno.ELOOP:
        return "symlink loop"
    if getattr(error, "errno", None) == errno.ENOENT:
        return "no such file (or a broken symlink)"
    return f"cannot read: {getattr(error, 'strerror', None) or error}"
