"""The one error family the front doors catch: each says what failed, why, and what to do.

Every failure a user can meet (bad settings, a missing model, an unreachable or failing store
or LLM server, a busy store, a question out of bounds) is a :class:`RagError`. The CLI prints
its message and exits 2; the chat app shows it as text; the API answers with its
``http_status``. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class RagError(Exception):
    """A failure a user can act on; the message names the file or server and the reason."""

    http_status = 503  # the service cannot do it now: a store or model server down, a busy store


class SettingsError(RagError, ValueError):
    """The settings (file, environment or flags) are invalid or name a missing file."""

    http_status = 500


class ModelNotFoundError(RagError, FileNotFoundError):
    """A configured model file or folder does not exist."""

    http_status = 500


class QuestionError(RagError, ValueError):
    """The question cannot be asked: empty, longer than allowed, or no source fits with it."""

    http_status = 400
