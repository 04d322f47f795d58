"""The command line, ``rag``: one subcommand per action, over the same services as the app."""

from rag.cli.main import main

__all__ = ["main"]
