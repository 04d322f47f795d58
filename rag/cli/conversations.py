"""``rag conversations``: list, show, export and delete the chats of a workspace."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rag.answering.answer import label_of
from rag.cli.output import EXIT_OK, tell
from rag.conversations import Conversations, exchange_text
from rag.documents.scanning import printable
from rag.library import counted
from rag.settings import Settings


def manage_conversations(settings: Settings, args: argparse.Namespace) -> int:
    """Do what the options ask, else list the workspace's conversations, the last one first.

    Raises:
        NoConversationError: no conversation of the workspace has the id given.
        ConversationError: the conversations file cannot be read or written.
    """
    chats = Conversations(settings.conversations_path, settings.workspace)
    if args.show:
        show_conversation(chats, args.show)
    elif args.export:
        exported = chats.export_markdown(args.export)
        if args.output:
            Path(args.output).write_text(exported, encoding="utf-8")
            tell(f"wrote {args.output}")
        else:
            print(exported)
    elif args.delete:
        title = chats.get(args.delete).title
        chats.delete(args.delete)
        tell(f"deleted {args.delete}: {printable(title)}")
    else:
        listed = chats.recent()
        for found in listed:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(found.updated))
            turns = counted(found.turns, "question")
            print(f"{found.id}  {when}  {turns:>12}  {printable(found.title)}")
        if not listed:
            tell(f"no conversations in workspace {settings.workspace!r} yet")
    return EXIT_OK


def show_conversation(chats: Conversations, conversation: str) -> None:
    """Print a conversation's turns as the chat showed them, with their cited sources."""
    header = chats.get(conversation)
    print(f"# {printable(header.title)}  ({header.id})")
    for exchange in chats.exchanges(conversation):
        print(f"> {printable(exchange.question)}")
        print(printable(exchange_text(exchange)))
        for citation in (exchange.details or {}).get("citations", []):
            print(f"  [{citation['number']}] {printable(label_of(citation))}")
