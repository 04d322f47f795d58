"""The conversations file: real SQLite, written by several processes at once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from rag.answering.answer import Answer, Citation, Turn
from rag.conversations import ConversationError, Conversations, NoConversationError


def answered(question: str, text: str) -> Answer:
    cited = Citation(1, "guide.pdf", 3, "The battery charges in 4.5 hours.", 0.8, (), True)
    return Answer(question, text, citations=[cited], timings={"total_s": 1.5})


def test_turns_last_and_only_finished_ones_make_the_history(tmp_path: Path) -> None:
    chats = Conversations(tmp_path / "data" / "conversations.sqlite3", "default")
    assert chats.recent() == []
    assert chats.latest() is None
    first = chats.start("  How long does a full\ncharge take? " + "x" * 100)
    assert first.title.startswith("How long does a full charge take? x")
    assert len(first.title) == 80
    turn = chats.ask(first.id, "How long does a full charge take?")
    chats.answer(turn, answered("How long does a full charge take?", "4.5 hours [1]"), "gemma")
    cut = chats.ask(first.id, "And the frame?")
    chats.interrupt(cut, "The fra")
    failed = chats.ask(first.id, "And the fork?")
    chats.fail(failed, "the LLM server is unreachable")
    left = chats.ask(first.id, "And the wheels?")  # a process killed while it answered

    reopened = Conversations(tmp_path / "data" / "conversations.sqlite3", "default")
    exchanges = reopened.exchanges(first.id)
    assert [e.state for e in exchanges] == ["answered", "interrupted", "failed", "answering"]
    assert exchanges[0].model == "gemma"
    details = exchanges[0].details
    assert details is not None
    assert details["citations"][0]["page"] == 3
    assert details["timings"] == {"total_s": 1.5}
    assert (details["refused"], details["supported"]) == (False, True)
    assert exchanges[-1].id == left
    first_turn = Turn("How long does a full charge take?", "4.5 hours [1]")
    assert reopened.history(first.id) == [first_turn]
    assert reopened.latest() == reopened.get(first.id)
    assert reopened.get(first.id).turns == 4


def test_list_rename_delete_export_and_workspaces_apart(tmp_path: Path) -> None:
    path = tmp_path / "conversations.sqlite3"
    chats, birds = Conversations(path, "default"), Conversations(path, "birds")
    older = chats.start("first question")
    newer = chats.start("second question")
    chats.ask(older.id, "asked again later")  # the last asked in comes first
    assert [c.id for c in chats.recent()] == [older.id, newer.id]
    assert birds.recent() == []
    with pytest.raises(NoConversationError):
        birds.exchanges(older.id)

    chats.rename(older.id, "  Battery  questions ")
    assert chats.get(older.id).title == "Battery questions"
    with pytest.raises(ConversationError, match="cannot be empty"):
        chats.rename(older.id, "   ")
    question = "How long does a full charge take?"
    turn = chats.ask(newer.id, question)
    chats.answer(turn, answered(question, "It takes 4.5 hours [1]."), "m")
    chats.fail(chats.ask(newer.id, "Why?"), "the LLM server is unreachable")
    exported = chats.export_markdown(newer.id)
    assert exported.startswith("# second question\n")
    assert "## 1. How long does a full charge take?\n\nIt takes 4.5 hours [1]." in exported
    assert "- [1] guide.pdf, page 3" in exported
    assert "## 2. Why?\n\nNo answer: the LLM server is unreachable" in exported

    chats.delete(newer.id)
    assert [c.id for c in chats.recent()] == [older.id]
    birds.start("kestrels")
    birds.move_to("raptors")
    assert birds.recent() == []
    assert [c.title for c in Conversations(path, "raptors").recent()] == ["kestrels"]
    Conversations(path, "raptors").delete_all()
    assert Conversations(path, "raptors").recent() == []
    assert [c.id for c in chats.recent()] == [older.id]


def _ask_many(path: Path, conversation: str, who: str) -> None:
    chats = Conversations(path, "default")
    for number in range(40):
        turn = chats.ask(conversation, f"{who} {number}")
        chats.answer(turn, answered(f"{who} {number}", f"answer {who} {number}"), "m")


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "conversations.sqlite3"
    conversation = Conversations(path, "default").start("shared").id
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_ask_many, args=(path, conversation, who)) for who in ("a", "b")
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    history = Conversations(path, "default").history(conversation)
    assert len(history) == 80
    assert {turn.question for turn in history} == {f"{w} {n}" for w in "ab" for n in range(40)}
    assert all(turn.answer == f"answer {turn.question}" for turn in history)


def test_an_unwritable_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where the data folder should be")
    chats = Conversations(tmp_path / "blocked" / "conversations.sqlite3", "default")
    with pytest.raises(ConversationError, match="cannot use the conversations file"):
        chats.start("question")
