"""Conversations that last: every question asked in the app or ``rag chat``, with its answer.

One SQLite file under the data folder (``conversations.sqlite3``) holds every workspace's
conversations, so a reload, a second tab and a restart find the same chat. Each turn is written
twice: when it is asked (``answering``) and when it ends (``answered``, ``interrupted`` or
``failed``), so an answer that never finished is never paired with the next question. A turn
keeps the answer's JSON (``Answer.to_json``: citations, ``refused``, ``supported``, timings),
the folder each source was ingested from (to show a cited page again) and the model's name.

Every call opens its own short connection: two tabs, or the app and ``rag chat``, may write at
once. Limits: the file is on this machine even when the store is a Chroma server, so two app
machines sharing a server keep their conversations apart; conversations are not searchable.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rag.answering.answer import Answer, Turn, label_of
from rag.errors import RagError

TurnState = Literal["answering", "answered", "interrupted", "failed"]
TITLE_CHARS = 80  # a conversation's title: its first question, cut here

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    title TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_by_workspace ON conversations (workspace, updated);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    question TEXT NOT NULL,
    state TEXT NOT NULL,
    text TEXT NOT NULL DEFAULT '',
    details TEXT,
    model TEXT,
    asked REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns (conversation, id);
"""


class ConversationError(RagError):
    """The conversations file cannot be read or written."""


class NoConversationError(ConversationError):
    """No conversation of this workspace has that id."""

    http_status = 404


@dataclass(frozen=True)
class Conversation:
    """One conversation's header: what a list of chats shows."""

    id: str
    workspace: str
    title: str
    created: float  # seconds since the epoch
    updated: float  # the last question asked in it
    turns: int


@dataclass(frozen=True)
class Exchange:
    """One stored turn: the question, how it ended, the answer's text and its JSON."""

    id: int
    question: str
    state: TurnState
    text: str  # the answer; for a failed turn, why it failed; partial when interrupted
    details: dict[str, Any] | None  # Answer.to_json() plus "roots" (source number -> folder)
    model: str | None
    asked: float

    @property
    def finished(self) -> bool:
        """Whether the turn holds a whole answer (the only kind a follow-up reads)."""
        return self.state == "answered"


class Conversations:
    """The conversations of one workspace in the conversations file."""

    def __init__(self, path: Path, workspace: str) -> None:
        """Nothing is opened yet: the file is made by the first write."""
        self.path = path
        self.workspace = workspace

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for one call, in a transaction that commits when the call succeeds."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=30)) as connection:
                connection.execute("PRAGMA foreign_keys = ON")
                with connection:
                    connection.executescript(_SCHEMA)
                with connection:
                    yield connection
        except (sqlite3.Error, OSError) as error:
            msg = f"cannot use the conversations file {self.path}: {error}"
            raise ConversationError(msg) from error

    def recent(self) -> list[Conversation]:
        """This workspace's conversations, the last one asked in first."""
        return self._headers("")

    def _headers(self, only: str, *values: str) -> list[Conversation]:
        """The workspace's conversation headers, narrowed by the condition ``only`` if any."""
        with self._connection() as db:
            rows = db.execute(
                "SELECT c.id, c.workspace, c.title, c.created, c.updated, COUNT(t.id) "
                "FROM conversations c LEFT JOIN turns t ON t.conversation = c.id "
                f"WHERE c.workspace = ? {only} GROUP BY c.id "
                "ORDER BY c.updated DESC, c.rowid DESC",
                (self.workspace, *values),
            ).fetchall()
        return [Conversation(*row) for row in rows]

    def latest(self) -> Conversation | None:
        """The conversation last asked in, or None when there is none."""
        found = self.recent()
        return found[0] if found else None

    def get(self, conversation: str) -> Conversation:
        """One conversation's header.

        Raises:
            NoConversationError: this workspace has no conversation of that id.
        """
        for found in self._headers("AND c.id = ?", conversation):
            return found
        msg = f"no conversation {conversation!r} in workspace {self.workspace!r}"
        raise NoConversationError(msg)

    def start(self, first_question: str) -> Conversation:
        """A new, empty conversation titled by its first question."""
        now = time.time()
        title = " ".join(first_question.split())
        if len(title) > TITLE_CHARS:
            title = title[: TITLE_CHARS - 1].rstrip() + "…"
        with self._connection() as db:
            while True:
                made = Conversation(secrets.token_hex(4), self.workspace, title, now, now, 0)
                try:
                    db.execute(
                        "INSERT INTO conversations VALUES (?, ?, ?, ?, ?)",
                        (made.id, made.workspace, made.title, made.created, made.updated),
                    )
                except sqlite3.IntegrityError:  # that id is taken: draw another
                    continue
                return made

    def exchanges(self, conversation: str) -> list[Exchange]:
        """Every turn of a conversation, in the order they were asked.

        Raises:
            NoConversationError: this workspace has no conversation of that id.
        """
        self.get(conversation)
        with self._connection() as db:
            rows = db.execute(
                "SELECT id, question, state, text, details, model, asked FROM turns "
                "WHERE conversation = ? ORDER BY id",
                (conversation,),
            ).fetchall()
        return [
            Exchange(id, question, state, text, json.loads(details) if details else None, m, t)
            for id, question, state, text, details, m, t in rows
        ]

    def history(self, conversation: str) -> list[Turn]:
        """The finished exchanges, for a follow-up: an unfinished answer pairs with nothing."""
        return [Turn(e.question, e.text) for e in self.exchanges(conversation) if e.finished]

    def ask(self, conversation: str, question: str) -> int:
        """Record a question as being answered; returns the turn's id.

        Raises:
            NoConversationError: this workspace has no conversation of that id.
        """
        self.get(conversation)
        now = time.time()
        with self._connection() as db:
            db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation))
            cursor = db.execute(
                "INSERT INTO turns (conversation, question, state, asked) VALUES (?, ?, ?, ?)",
                (conversation, question, "answering", now),
            )
        return int(cursor.lastrowid or 0)

    def answer(self, turn: int, answer: Answer, model: str) -> None:
        """Record a turn's finished answer, with what it cites and the model that wrote it."""
        self._end(turn, "answered", answer.text, answer_details(answer), model)

    def interrupt(self, turn: int, partial: str = "") -> None:
        """Record that a turn's answer was stopped before it finished."""
        self._end(turn, "interrupted", partial, None, None)

    def fail(self, turn: int, reason: str) -> None:
        """Record that a turn got no answer, and why."""
        self._end(turn, "failed", reason, None, None)

    def _end(
        self,
        turn: int,
        state: TurnState,
        text: str,
        details: dict[str, Any] | None,
        model: str | None,
    ) -> None:
        stored = json.dumps(details, ensure_ascii=False) if details is not None else None
        with self._connection() as db:
            db.execute(
                "UPDATE turns SET state = ?, text = ?, details = ?, model = ? WHERE id = ?",
                (state, text, stored, model, turn),
            )

    def rename(self, conversation: str, title: str) -> None:
        """Give a conversation another title.

        Raises:
            NoConversationError: this workspace has no conversation of that id.
            ConversationError: the title is empty.
        """
        title = " ".join(title.split())
        if not title:
            msg = "a conversation's title cannot be empty"
            raise ConversationError(msg)
        self.get(conversation)
        with self._connection() as db:
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation))

    def delete(self, conversation: str) -> None:
        """Delete a conversation with its turns.

        Raises:
            NoConversationError: this workspace has no conversation of that id.
        """
        self.get(conversation)
        with self._connection() as db:
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation,))

    def delete_all(self) -> None:
        """Delete every conversation of the workspace (it is being removed)."""
        with self._connection() as db:
            db.execute("DELETE FROM conversations WHERE workspace = ?", (self.workspace,))

    def move_to(self, workspace: str) -> None:
        """Give every conversation of the workspace to ``workspace`` (it is being renamed)."""
        with self._connection() as db:
            db.execute(
                "UPDATE conversations SET workspace = ? WHERE workspace = ?",
                (workspace, self.workspace),
            )

    def export_markdown(self, conversation: str) -> str:
        """The conversation as Markdown: each question, its answer and numbered sources.

        Raises:
            NoConversationError: this workspace has no conversation of that id.
        """
        header = self.get(conversation)
        asked = time.strftime("%Y-%m-%d %H:%M", time.localtime(header.created))
        lines = [f"# {header.title}", "", f"Workspace {header.workspace}, started {asked}.", ""]
        for number, exchange in enumerate(self.exchanges(conversation), start=1):
            lines += [f"## {number}. {exchange.question}", ""]
            lines += [exchange_text(exchange), ""]
            citations = (exchange.details or {}).get("citations", [])
            if citations:
                lines += ["Sources:", ""]
                lines += [f"- [{c['number']}] {label_of(c)}" for c in citations]
                lines.append("")
            if exchange.model:
                lines += [f"_Answered by {exchange.model}._", ""]
        return "\n".join(lines)


def answer_details(answer: Answer) -> dict[str, Any]:
    """What is kept of an answer besides its text: ``Answer.to_json`` and its sources' folders.

    The folders (``roots``, by source number) let the app show a cited page again; the API
    does not send them.
    """
    details = answer.to_json()
    details["roots"] = {
        str(source.number): str(source.chunk.metadata.get("root", ""))
        for source in answer.retrieved
    }
    return details


def exchange_text(exchange: Exchange) -> str:
    """What a reader sees for a turn's answer: its text, or how it ended without one."""
    if exchange.state == "answered":
        return exchange.text
    if exchange.state == "failed":
        return f"No answer: {exchange.text}"
    if exchange.state == "interrupted":
        return "Interrupted: no answer to this question."
    return "No answer stored: it is still being answered elsewhere, or was stopped."
