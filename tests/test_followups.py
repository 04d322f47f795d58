"""Follow-ups rewritten into questions that stand alone (rules; the real models at the end)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rag.answering.answer import Turn
from rag.answering.followups import rewrite_with_model, standalone_question, subject_of
from rag.models.llm import LLMError, Prompt
from tests.fakes import ScriptedLLM


@pytest.mark.parametrize(
    ("question", "subject"),
    [
        ("What does dict.popitem() do?", "dict.popitem()"),
        ("How long does a full charge of the battery take?", "a full charge of the battery"),
        ("What does the raise statement do?", "the raise statement"),
        ("How are floating point literals written?", "floating point literals"),
        ("What are lambda expressions used for?", "lambda expressions"),
        ("Which compression level does gzip.compress use by default?", "gzip.compress"),
        (
            "What is the Title field of a package's DESCRIPTION file?",
            "the Title field of a package's DESCRIPTION file",
        ),
        ("What is it?", ""),
    ],
)
def test_the_subject_is_the_phrase_asked_about(question: str, subject: str) -> None:
    assert subject_of(question) == subject


@pytest.mark.parametrize(
    ("first", "follow_up", "alone"),
    [
        (
            "What does dict.popitem() do?",
            "What error does it raise?",
            "What error does dict.popitem() raise?",
        ),
        (
            "What is the built-in variable __debug__?",
            "What is its value?",
            "What is the built-in variable __debug__'s value?",
        ),
        (
            "How are floating point literals written?",
            "What radix are their parts in?",
            "What radix are floating point literals' parts in?",
        ),
        (
            "Which compression level does gzip.compress use?",
            "Which values does that argument take?",
            "Which values does gzip.compress's argument take?",
        ),
        (
            "What does the nonlocal statement do?",
            "What do names refer to after that statement?",
            "What do names refer to after the nonlocal statement?",
        ),
        (
            "What does the raise statement do?",
            "What does a bare one do?",
            "What does a bare raise statement do?",
        ),
        (
            "What does the warranty cover?",
            "and for how many charge cycles?",
            "For how many charge cycles, regarding the warranty?",
        ),
        (
            "What is the default maxsize of functools.lru_cache?",
            "What about functools.cache?",
            "What is the default maxsize of functools.cache?",
        ),
    ],
)
def test_a_follow_up_gets_the_subject_of_the_question_before(
    first: str, follow_up: str, alone: str
) -> None:
    assert standalone_question(follow_up, [Turn(first, "an answer")]) == alone


def test_questions_that_stand_alone_are_left_as_they_are() -> None:
    history = [Turn("What does the warranty cover?", "The frame.")]
    for question in (
        "How long does it take to charge the battery?",  # 'it' of no one
        "What is the function that makes lists?",  # 'that' joins a clause
        "Which one is faster, a list or a tuple?",
        "How many charge cycles does the battery last?",
    ):
        assert standalone_question(question, history) == question
    assert standalone_question("What does it return?", []) == "What does it return?"


def test_a_chain_of_follow_ups_keeps_its_subject() -> None:
    history = [
        Turn("What does dict.popitem() do?", "It removes a pair."),
        Turn("In what order does it return pairs?", "LIFO."),
        Turn("and on an empty dictionary?", "KeyError."),
    ]
    assert standalone_question("What does it raise when empty?", history) == (
        "What does dict.popitem() raise when empty?"
    )
    history.append(Turn("What does the del statement do?", "It deletes."))  # a new subject
    assert standalone_question("What does it raise?", history) == (
        "What does the del statement raise?"
    )


class _Failing(ScriptedLLM):
    def stream(self, prompt: Prompt) -> Iterator[str]:
        raise LLMError("the server is gone")
        yield ""


def test_an_instruction_tuned_model_rewrites_and_a_bad_rewrite_falls_back() -> None:
    history = [Turn("What does dict.popitem() do?", "It removes and returns a pair.")]
    ruled = "What error does dict.popitem() raise?"
    good = ScriptedLLM('"What error does dict.popitem() raise on an empty dict?"')
    written = rewrite_with_model(good, "What error does it raise?", history, ruled)
    assert written == "What error does dict.popitem() raise on an empty dict?"
    echo = ScriptedLLM("What error does it raise?")
    for bad in (ScriptedLLM("It raises KeyError."), ScriptedLLM("What?\nWhy?"), echo, _Failing()):
        assert rewrite_with_model(bad, "What error does it raise?", history, ruled) == ruled
