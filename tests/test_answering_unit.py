"""Citation and support checks with exact inputs (the real model is tested in test_answering)."""

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from rag.answering.answer import QUOTED_NOTICE, UNSUPPORTED_NOTICE, Answer, Source
from rag.answering.answerer import _stem
from rag.answering.citations import Checked, _numbers, check_answer, resolve_markers, support
from rag.answering.followups import is_follow_up
from rag.answering.prompt import excerpt
from rag.retrieval.retriever import Retrieved
from rag.settings import AnswerSettings


def test_markers_that_point_at_nothing_are_dropped() -> None:
    text, cited = resolve_markers("Four hours [2], see also [7] and [1, 9][2].", {1, 2})
    assert text == "Four hours [2], see also and [1][2]."
    assert cited == [2, 1]
    assert resolve_markers("No markers at all.", {1}) == ("No markers at all.", [])
    assert resolve_markers("Only bad ones [5].", {1}) == ("Only bad ones.", [])


def test_support_is_the_share_of_answer_words_in_the_evidence() -> None:
    evidence = "The battery charges fully in four hours from the wall plug."
    assert support("The battery charges in four hours [1].", evidence) == 1.0
    assert support("The motor is waterproof.", evidence) == 0.0
    assert support("[1]", evidence) == 1.0  # nothing to check
    assert _numbers("Charged in 4.5 hours, 800 cycles [3].") == {"4.5", "800"}


def chunk(
    number: int,
    text: str,
    windows: tuple[int, ...] = (),
    scores: tuple[float, ...] = (),
    **metadata: Any,
) -> Source:
    vector = np.ones(2, dtype=np.float32) / np.sqrt(2)
    retrieved = Retrieved(
        f"c{number}",
        text,
        {"source": f"doc{number}.pdf", "page": number + 10, **metadata},
        0.6,
        0.0,
        0.0,
        vector,
        (),
        windows,
        scores,
    )
    return Source(number, retrieved, text)


def checker(**settings: Any) -> Callable[[str, list[Source]], Checked]:
    """The citation check with these answer settings: (the model's text, sources) -> Checked."""
    return partial(check_answer, settings=AnswerSettings(**settings))


def test_refusals_unsupported_answers_and_inferred_citations() -> None:
    sources = [
        chunk(1, "The frame is made of aluminium."),
        chunk(2, "A full charge takes 4.5 hours from the wall plug."),
    ]
    check = checker(quote="never")  # the model's own text, checked and flagged, never replaced
    refused = check(" I don't know.", sources)
    assert (refused.refused, refused.citations) == (True, [])
    assert check("I don’t know", sources).refused

    cited = check("A full charge takes 4.5 hours [2].", sources)
    assert ([c.number for c in cited.citations], cited.supported) == ([2], True)
    assert cited.citations[0].by_model

    wrong_figure = check("A full charge takes 6 hours [2].", sources)
    assert not wrong_figure.supported

    # A marker pointing at a source that does not hold the claim goes to the one that does.
    wrong_source = check("A full charge takes 4.5 hours [1].", sources)
    assert (wrong_source.text, wrong_source.supported) == (
        "A full charge takes 4.5 hours. [2]",
        True,
    )

    inferred = check("It takes 4.5 hours from the wall plug.", sources)
    assert inferred.text == "It takes 4.5 hours from the wall plug. [2]"
    assert [(c.number, c.by_model) for c in inferred.citations] == [(2, False)]

    unsupported = check("The motor is waterproof.", sources)
    assert (unsupported.citations, unsupported.supported) == ([], False)


def test_the_citation_goes_to_the_passage_that_holds_the_answer() -> None:
    sources = [
        chunk(1, "Charging: see the next page. The frame is made of aluminium."),
        chunk(2, "The battery charges in 4.5 hours. It charges from the wall plug."),
        chunk(3, "A full charge takes 4.5 hours from the wall plug or 6 hours by USB."),
    ]
    check = checker(quote="never")
    # The model cites [1], which does not hold its claim: the source that does is cited.
    moved = check("A full charge takes 4.5 hours from the wall plug [1].", sources)
    assert [(c.number, c.page, c.by_model) for c in moved.citations] == [(3, 13, False)]
    assert moved.text.endswith("[3]")
    assert moved.supported
    # No marker: the source holding most of the answer wins over the better-ranked one.
    inferred = check("A full charge takes 4.5 hours by USB.", sources)
    assert [c.number for c in inferred.citations] == [3]
    # A copied source label is taken off the answer, and names the source.
    labelled = check("doc2.pdf, page 12: … The battery charges in 4.5 hours.", sources)
    assert labelled.text == "The battery charges in 4.5 hours. [2]"
    numbered = check("[2] doc2.pdf, page 12: … The battery charges in 4.5 hours.", sources)
    assert numbered.text == "The battery charges in 4.5 hours. [2]"
    # Labels and nothing else say nothing: a refusal.
    only = check("doc2.pdf, page 12: … doc1.pdf, page 11: …", sources)
    assert only.refused


def test_an_answer_off_the_best_passage_becomes_a_quote_of_it() -> None:
    sources = [
        chunk(1, "The frame is made of aluminium. It weighs 2 kg.", (0,), (0.4,)),
        chunk(2, "Charging is easy. A full charge takes 4.5 hours.", (0,), (0.8,)),
    ]
    # The model copied a neighbouring passage: the passage matching the question best is quoted.
    quoted = checker()("The frame is made of aluminium [1].", sources)
    assert quoted.text == '"Charging is easy. A full charge takes 4.5 hours." [2]'
    assert quoted.model_text == "The frame is made of aluminium [1]."
    assert [(c.number, c.by_model) for c in quoted.citations] == [(2, False)]
    # With quote="unsupported", a supported answer stands (citing where it is held).
    kept = checker(quote="unsupported")("The frame is made of aluminium [1].", sources)
    assert (kept.text, kept.model_text) == ("The frame is made of aluminium [1].", None)
    # An answer that the best passage holds is kept, and that passage is cited.
    short = checker()("4.5 hours [1]", sources)
    assert (short.text, short.model_text) == ("4.5 hours [2]", None)
    # An invented figure is never kept: quoted instead.
    invented = checker(quote="unsupported")("It takes 3 hours.", sources)
    assert invented.text.startswith('"Charging is easy.')
    assert invented.model_text


def test_an_answer_right_after_an_unfinished_best_passage_stands() -> None:
    # The best passage restates the question and runs on into the file's next chunk.
    same_file = {"root": "/docs", "source": "faq.pdf", "file_hash": "h"}
    asked = "Old releases. How do I get binaries for old releases? They are kept on a central"
    after = "archive server. Point the repos option at archive.example.org to get them."
    sources = [
        chunk(1, asked, (1, 0, 2), (0.5, 0.9, 0.3), chunk_index=7, **same_file),
        chunk(2, after, (0, 1), (0.6, 0.2), chunk_index=8, **same_file),
    ]
    model = "Point the repos option at archive.example.org [2]."
    kept = checker()(model, sources)
    assert (kept.text, kept.model_text) == (model, None)
    assert [(c.number, c.page) for c in kept.citations] == [(2, 12)]
    # A finished best passage is one statement: an answer after it is a neighbour's, quoted.
    finished = [chunk(1, asked + " archive.", (1, 0, 2), (0.5, 0.9, 0.3)), sources[1]]
    quoted = checker()(model, finished)
    assert quoted.text.startswith('"How do I get binaries')
    assert quoted.model_text == model
    # So is one whose next chunk is not among the sources.
    apart = [sources[0], chunk(2, after, (0, 1), (0.6, 0.2), chunk_index=9, **same_file)]
    assert checker()(model, apart).model_text == model


def test_a_refusal_beside_a_passage_that_plainly_answers_becomes_a_quote() -> None:
    sources = [chunk(1, "Charging is easy. A full charge takes 4.5 hours.", (0,), (0.8,))]
    quoted = checker()("I don't know.", sources)
    assert quoted.text == '"Charging is easy. A full charge takes 4.5 hours." [1]'
    assert (quoted.refused, quoted.model_text) == (False, "I don't know.")
    assert [(c.number, c.by_model) for c in quoted.citations] == [(1, False)]
    # A passage that only touches the question leaves the refusal; so does quote="never".
    weak = [chunk(1, "Charging is easy. A full charge takes 4.5 hours.", (0,), (0.45,))]
    assert checker()("I don't know.", weak).refused
    assert checker(quote="never")("I don't know.", sources).refused


def test_excerpts_keep_the_best_sentence_pairs_and_mark_omissions() -> None:
    text = "One is first. Two is next. Three is here. Four is there. Five ends it."
    source = chunk(1, text, windows=(2, 0, 1, 3))
    assert excerpt(source.chunk, 1) == "… Three is here. Four is there. …"
    assert excerpt(source.chunk, 2) == (
        "One is first. Two is next. Three is here. Four is there. …"
    )
    last = chunk(1, text, windows=(3, 0))
    assert excerpt(last.chunk, 2) == ("One is first. Two is next. … Four is there. Five ends it.")
    assert excerpt(source.chunk, 0) == text


def test_follow_ups_are_told_from_new_questions() -> None:
    for question in (
        "and for how many charge cycles?",
        "What about its warranty?",
        "How long is it?",
    ):
        assert is_follow_up(question), question
    for question in ("Who won the 2022 football world cup?", "How long does a charge take?"):
        assert not is_follow_up(question), question


def test_inflections_share_a_stem() -> None:
    assert _stem("deleting") == _stem("deletion") == _stem("delete") == "delet"
    assert _stem("caches") == _stem("cache")
    assert _stem("zlib") == "zlib"


def test_what_a_reader_must_know_is_worded_once_for_every_front_door() -> None:
    plain = Answer("q", "Four hours [1].")
    assert plain.notices == []
    quoted = Answer(
        "q", '"Four hours." [1]', model_text="Six hours.", warnings=["max_tokens was capped"]
    )
    assert [(n.kind, n.text) for n in quoted.notices] == [
        ("note", f"{QUOTED_NOTICE} The model wrote: Six hours."),
        ("warning", "max_tokens was capped"),
    ]
    unsupported = Answer("q", "The motor is waterproof.", supported=False)
    assert [n.text for n in unsupported.notices] == [UNSUPPORTED_NOTICE]
    assert unsupported.to_json()["notices"] == [{"kind": "warning", "text": UNSUPPORTED_NOTICE}]
