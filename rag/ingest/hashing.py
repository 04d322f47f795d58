"""The one hash of ingest: file contents, chunk texts and chunk ids (SHA-256, hex)."""

from __future__ import annotations

import hashlib


def digest(data: str | bytes) -> str:
    """SHA-256 of ``data`` (text as UTF-8), in hex."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()
