"""What every command shares: its exit statuses, and how it tells the user what it waits for."""

from __future__ import annotations

import sys

EXIT_OK, EXIT_FILES_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_CHECK_FAILED = 1  # rag doctor: some check failed


def tell(message: str) -> None:
    """A message for the person at the terminal, on standard error (the answer goes to stdout)."""
    print(message, file=sys.stderr, flush=True)
