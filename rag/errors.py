"""The one error family the front doors catch: each says what failed, why, and what to do.

Every failure a user can meet (bad settings, a missing model, an unreachable or failing store
or LLM server, a busy store, a question out of bounds) is a :class:`RagError`. The CLI prints
its message and exits 2; the chat app shows it as text. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class RagError(Exception):
    """A failure a user can act on; the message names the file or server and the reason."""


class SettingsError(RagError, ValueError):
    """The settings (file, environment or flags) are invalid or name a missing file."""


class ModelNotFoundError(RagError, FileNotFoundError):
    """A configured model file or folder does not exist."""


class QuestionError(RagError, ValueError):
    """The question cannot be asked: empty, longer than allowed, or no source fits with it."""
