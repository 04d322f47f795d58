"""``rag search``, ``rag ask``, ``rag chat`` and ``rag eval``: questions from a terminal."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from rag.answering.answer import Answer, AnswerStream, label_of
from rag.answering.answerer import Answerer, AskOptions
from rag.cli.conversations import show_conversation
from rag.cli.documents import print_report
from rag.cli.output import (
    EXIT_ERROR,
    EXIT_OK,
    tell,
)
from rag.conversations import Conversations
from rag.documents.scanning import printable
from rag.errors import RagError
from rag.library import counted
from rag.models.llm import name_of
from rag.pipeline import Pipeline
from rag.retrieval.retriever import Retriever
from rag.settings import Settings


def search(query: str, k: int | None, retriever: Retriever) -> int:
    """Print the chunks retrieved for ``query``, with source, page, heading and similarity."""
    if retriever.store.count() == 0:
        tell("the store is empty: run `python ingest.py PATH` first")
        return EXIT_OK
    found = retriever.retrieve(query, k)
    if not found:
        print("nothing relevant found: no chunk is above the relevance floor")
    for rank, chunk in enumerate(found, start=1):
        where = printable(label_of(chunk.metadata))
        if chunk.metadata.get("headings"):
            where += f" ({chunk.metadata['headings']})"
        snippet = " ".join(chunk.text.split())[:200]
        print(f"{rank}. [similarity {chunk.similarity:.2f}] {where}\n   {snippet}")
    print(f"searched {retriever.store.location}")
    return EXIT_OK


def ask(answerer: Answerer, question: str, options: AskOptions, as_json: bool) -> int:
    """Stream one answer and its sources (or print it as JSON)."""
    stream = answerer.stream(question, options=options)
    if as_json:
        print(json.dumps(stream.result().to_json(), ensure_ascii=False, indent=2))
        return EXIT_OK
    if print_streamed(stream).retrieved:
        print(f"store: {answerer.retriever.store.location}")
    return EXIT_OK


def chat(answerer: Answerer, options: AskOptions, chats: Conversations, resume: str | None) -> int:
    """A conversation at the terminal, kept like the app's; an empty line starts a new one.

    Follow-ups use the conversation; ``resume`` ("last" or an id) goes on with an earlier one.

    Raises:
        NoConversationError: no conversation has the id ``resume`` names.
    """
    current = chats.latest() if resume == "last" else chats.get(resume) if resume else None
    if current is not None:
        show_conversation(chats, current.id)
    elif resume:
        tell("no earlier conversation in this workspace: starting a new one")
    store = answerer.retriever.store.location
    tell(f"ask about your documents in {store}; an empty line starts over, Ctrl-D ends")
    model = name_of(answerer.llm)
    while True:
        try:
            question = input("> ").strip()
        except EOFError:
            print()
            return EXIT_OK
        if not question:
            current = None
            tell("(new conversation)")
            continue
        if current is None:
            current = chats.start(question)
        history = chats.history(current.id)
        turn = chats.ask(current.id, question)
        try:
            answer = print_streamed(answerer.stream(question, history, options))
        except RagError as error:  # a store or server gone: say so, keep the conversation
            chats.fail(turn, str(error))
            tell(f"error: {error}")
            continue
        except BaseException:  # Ctrl-C while it streamed
            chats.interrupt(turn)
            raise
        chats.answer(turn, answer, model)


def print_streamed(stream: AnswerStream) -> Answer:
    """Print the answer as it settles (every piece stands), then what to know of it, its sources."""
    for piece in stream:
        print(piece, end="", flush=True)
    answer = stream.result()
    print()
    if answer.standalone_question:
        print(f"searched as: {printable(answer.standalone_question)}")
    for notice in answer.notices:
        print(f"{notice.kind}: {printable(notice.text)}")
    _print_sources(answer)
    return answer


def _print_sources(answer: Answer) -> None:
    if answer.refused and not answer.retrieved:
        return
    for citation in answer.citations:
        print(
            f"[{citation.number}] {printable(citation.label)}  similarity {citation.similarity:.2f}"
        )
        print(f"    {citation.snippet[:300]}")
    if not answer.citations and answer.retrieved:
        shown = ", ".join(f"[{s.number}] {printable(s.label)}" for s in answer.retrieved)
        print(f"retrieved: {shown}")
    if answer.left_out:
        print(f"left out (over the context budget): {counted(len(answer.left_out), 'chunk')}")


def evaluate_set(args: argparse.Namespace, settings: Settings) -> int:
    """Ingest a corpus into a fresh store, ask its question set and print the figures."""
    from rag.evaluation import evaluate, load_questions

    questions = load_questions(args.questions)
    if not args.corpus.is_dir():
        tell(f"error: corpus {args.corpus} is not a folder")
        return EXIT_ERROR
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as data_dir:
        # A fresh embedded store of its own, whatever the settings say; the caller's settings
        # stay as they were (a copy is shallow: its store block is copied too).
        embedded = settings.store.model_copy(update={"mode": "embedded"})
        settings = settings.model_copy(update={"data_dir": Path(data_dir), "store": embedded})
        with Pipeline(settings) as pipeline:
            report = pipeline.ingestor.sync([args.corpus])
            print_report(report, out=sys.stderr)
            answerer = pipeline.answerer
            answerer.load()
            k = args.k or settings.retrieval.k
            progress = tqdm(total=len(questions), desc="questions", disable=None, file=sys.stderr)
            result = evaluate(answerer, questions, k, lambda row: progress.update(1))
            progress.close()
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
    else:
        print(result.table())
    return EXIT_OK
