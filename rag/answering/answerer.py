"""Answer a question from the documents: retrieve, fit the sources, stream, check.

The retrieved chunks become numbered sources in the prompt (:mod:`rag.answering.prompt`), added
best first while they fit the token budget (context window minus the prompt's own text, the
question and the answer's reserve); a source that does not fit is left out whole and reported,
never cut. The reserve is capped so that the best source always fits, and a question that
leaves no room for one is refused with an error. When the retriever finds nothing above its
relevance floor the answer is "I don't know", without asking the model; so is a question naming
something no passage found covers (:meth:`Answerer._unknown_subject`). The answer streams a
sentence at a time, each once the citation check (:mod:`rag.answering.citations`) has judged
it, so the text shown is never taken back; generation stops at copied chat markup and at loops
(:mod:`rag.answering.settling`).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Generator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

from rag.answering.answer import Answer, AnswerStream, Source, Turn
from rag.answering.citations import Checked, LaterSentences, check_answer
from rag.answering.followups import is_follow_up, rewrite_follow_up, rewrite_with_model
from rag.answering.prompt import build_prompt, excerpt, source_block
from rag.answering.rules import AnswerRules, rules_for
from rag.answering.settling import cut_at_markup, loop_start, next_sentence
from rag.errors import QuestionError
from rag.models.llm import LLM, LLMError, Prompt
from rag.retrieval.retriever import Retrieved, Retriever
from rag.settings import AnswerSettings, LLMSettings
from rag.storage.keywords import keywords

NOTHING_FOUND = "I don't know: nothing in the documents matches this question."


MIN_ANSWER_TOKENS = 32  # the least an answer's reserve may be capped to


@dataclass(frozen=True)
class _Plan:
    """What a question comes to before the model writes: a prompt, or an answer without one."""

    question: str
    retrieval_s: float
    standalone: str  # the question as retrieval and the model saw it (a follow-up rewritten)
    prompt: Prompt | None = None
    numbered: list[Source] = field(default_factory=list)
    left_out: list[Retrieved] = field(default_factory=list)
    said: str = ""  # the answer when there is no prompt
    capped_from: int | None = None  # the max_tokens asked, when the reserve is less


@dataclass(frozen=True)
class AskOptions:
    """What one question may change from the settings; None keeps the setting."""

    k: int | None = None  # chunks to retrieve
    sources: Collection[str] | None = None  # only these source paths
    file_types: Collection[str] | None = None  # only these file types ('pdf', 'md')
    hybrid: bool | None = None  # keyword search beside the dense one
    temperature: float | None = None
    max_tokens: int | None = None  # the answer's length at most


class Answerer:
    """Retrieval, prompt, generation and citation checking for one question at a time."""

    def __init__(
        self,
        settings: AnswerSettings,
        llm_settings: LLMSettings,
        retriever: Retriever,
        llm: LLM,
    ) -> None:
        self.given = settings
        self.llm_settings = llm_settings
        self.retriever = retriever
        self.llm = llm

    @cached_property
    def rules(self) -> AnswerRules:
        """The answer rules of this kind of model, with what the settings set themselves."""
        return rules_for(self.given, self.llm_settings, self.llm.instruction_tuned)

    @cached_property
    def settings(self) -> AnswerSettings:
        """The answer settings with the rules of this kind of model in what they leave unset."""
        rules = self.rules
        return self.given.model_copy(
            update={"quote": rules.quote, "excerpt_windows": rules.excerpt_windows}
        )

    def load(self) -> None:
        """Load both models now: a question's timings then count answering, never loading."""
        self.retriever.embedder.load()
        self.llm.load()

    def warm_up(self) -> None:
        """Load the models and run each once, for a process that will answer many questions.

        The first question then starts as fast as the next ones: the retrieval indexes are
        built, and llama.cpp keeps the prompt's fixed opening (instructions and examples) in its
        cache for every later prompt that starts the same way.
        """
        self.load()
        self.retriever.retrieve("warm-up")
        prompt = replace(build_prompt("warm-up", [], []), max_tokens=1)
        try:
            for _ in self.llm.stream(prompt):
                pass
        except LLMError:
            pass  # a server that is down now may be up by the first question, which would say so

    def ask(
        self, question: str, history: Sequence[Turn] = (), options: AskOptions | None = None
    ) -> Answer:
        """Answer ``question`` in full (see :meth:`stream`)."""
        return self.stream(question, history, options).result()

    def stream(
        self,
        question: str,
        history: Sequence[Turn] = (),
        options: AskOptions | None = None,
    ) -> AnswerStream:
        """Retrieve for ``question`` (in the context of ``history``), then stream the answer.

        A follow-up is rewritten into a question that stands alone first
        (:mod:`rag.answering.followups`); the answer's ``standalone_question`` says so.

        ``options`` override the settings for this question.

        Raises:
            QuestionError: the question is empty or longer than ``answer.max_question_chars``,
                or it leaves no room for its best source and an answer in the context.
        """
        started = time.perf_counter()
        plan = self._plan(question, history, options or AskOptions())
        timings = {"retrieval_s": plan.retrieval_s}
        rewritten = plan.standalone if plan.standalone != plan.question else None
        if plan.prompt is None:
            said = self._answer_without_model(plan.question, plan.said, timings, started)
            return AnswerStream(_asked_as(said, rewritten))
        settled = self._settle(
            plan.question, plan.prompt, plan.numbered, plan.left_out, timings, started
        )
        settled = _asked_as(settled, rewritten)
        if plan.capped_from is not None:
            settled = _with_warning(
                settled,
                f"max_tokens {plan.capped_from} was capped at {plan.prompt.max_tokens}, so that "
                "the best source fits the model's context",
            )
        return AnswerStream(settled)

    def prompt_for(
        self, question: str, history: Sequence[Turn] = (), options: AskOptions | None = None
    ) -> Prompt | None:
        """The prompt :meth:`stream` would send the model; None when it would not ask it."""
        return self._plan(question, history, options or AskOptions()).prompt

    def _plan(self, question: str, history: Sequence[Turn], options: AskOptions) -> _Plan:
        """Check the question, retrieve, and fit the sources and the answer into the context.

        Raises:
            QuestionError: as :meth:`stream` says.
        """
        question = question.strip()
        if not question:
            raise QuestionError("the question is empty")
        if len(question) > self.settings.max_question_chars:
            msg = f"the question is longer than {self.settings.max_question_chars} characters"
            raise QuestionError(msg)
        started = time.perf_counter()
        standalone, query = question, question
        earlier: list[str] = []  # a question that stands alone is not dragged back to old subjects
        rewritten = (
            rewrite_follow_up(question, history) if self.settings.rewrite_follow_ups else None
        )
        if rewritten:
            standalone = rewritten.question
            if self.llm.instruction_tuned:  # it rewrites better than the rules
                standalone = rewrite_with_model(self.llm, question, history, standalone)
            query = f"{rewritten.earlier} {standalone}"
        elif (
            not self.settings.rewrite_follow_ups
            and self.settings.history_turns
            and is_follow_up(question)
        ):
            earlier = [turn.question for turn in history][-self.settings.history_turns :]
            query = " ".join([*earlier, question])
        found = self.retriever.retrieve(
            query, options.k, options.sources, options.file_types, options.hybrid
        )
        # An index or contents page only points at the answer: never shown, quoted or cited.
        found = [chunk for chunk in found if not chunk.metadata.get("navigation")]
        retrieval_s = time.perf_counter() - started
        said = NOTHING_FOUND if not found else self._unknown_subject(standalone, found)
        if said is not None:
            return _Plan(question, retrieval_s, standalone, said=said)
        asked = options.max_tokens or self.llm_settings.max_tokens
        reserve = self._capped_reserve(standalone, earlier, found[0], asked)
        numbered, left_out = self._fit(standalone, earlier, found, reserve)
        prompt = replace(
            build_prompt(standalone, earlier, numbered),
            temperature=options.temperature,
            max_tokens=reserve,
            copy_bias=self.rules.copy_bias,
        )
        capped_from = asked if reserve < asked else None
        return _Plan(
            question, retrieval_s, standalone, prompt, numbered, left_out, capped_from=capped_from
        )

    def _capped_reserve(
        self, question: str, earlier: list[str], best: Retrieved, asked: int
    ) -> int:
        """The answer's token reserve: as asked, less what the best source needs to fit.

        Raises:
            QuestionError: not even the question and the best source fit the context.
        """
        frame = self.llm.count_tokens(build_prompt(question, earlier, []).completion)
        source = self.llm.count_tokens(
            source_block(Source(1, best, excerpt(best, self.rules.excerpt_windows)))
        )
        room = self.llm.context_size - frame - source
        if room < MIN_ANSWER_TOKENS:
            msg = (
                f"the question and its best source take {frame + source} tokens, which leaves "
                f"no room for an answer in the model's context of {self.llm.context_size}; "
                "ask a shorter question or raise llm.n_ctx"
            )
            raise QuestionError(msg)
        return min(asked, room)

    @staticmethod
    def _answer_without_model(
        question: str, said: str, timings: dict[str, float], started: float
    ) -> Generator[str, None, Answer]:
        timings["first_token_s"] = timings["total_s"] = time.perf_counter() - started
        yield said
        return Answer(question, said, refused=True, timings=timings)

    def _settle(
        self,
        question: str,
        prompt: Prompt,
        numbered: list[Source],
        left_out: list[Retrieved],
        timings: dict[str, float],
        started: float,
    ) -> Generator[str, None, Answer]:
        """The model's text, a sentence at a time, each shown once the check has judged it.

        The first sentence gets the whole check (:func:`check_answer`): when a quote or a refusal
        replaces it, that is the answer and the model is stopped. Each later sentence stands
        when a source holds it (its marker moved there if need be); the first one no source
        holds ends the answer, as does a repeated sentence or one with no words. Generation
        stops at a chat-control spelling and when the text loops.
        """
        raw, looped, judged, final = "", "", 0, False
        first: Answer | None = None
        later = LaterSentences(self.settings, numbered)
        generation = self.llm.stream(prompt)
        try:
            while not final:
                piece = next(generation, None)
                if piece is None:
                    final = True
                else:
                    timings.setdefault("model_first_token_s", time.perf_counter() - started)
                    raw, looped, final = _cut_at_markup_or_loop(raw + piece, judged)
                while True:
                    rest = raw[judged:]
                    body = rest.lstrip()
                    end = next_sentence(body, final) if body else None
                    if end is None:
                        break
                    gap, sentence = rest[: len(rest) - len(body)], body[:end]
                    judged += len(gap) + end
                    if first is None:
                        first = _answer(question, check_answer(sentence, numbered, self.settings))
                        shown, stop = first.text, first.model_text is not None or first.refused
                    else:
                        shown, stop = later.judge(sentence, gap)
                    if shown:
                        timings.setdefault("first_token_s", time.perf_counter() - started)
                        yield shown
                    if stop:
                        final = True
                        break
        finally:
            close = getattr(generation, "close", None)
            if close is not None:
                close()  # the model's stream lets go of the model at once
        timings["total_s"] = time.perf_counter() - started
        if first is None:  # the model wrote nothing, or only a loop: a refusal, or a quote
            first = _answer(question, check_answer(raw or looped[:200], numbered, self.settings))
            timings["first_token_s"] = timings["total_s"]
            yield first.text
        timings.setdefault("first_token_s", timings["total_s"])
        first.warnings += later.warnings
        first.text += "".join(later.said)
        numbers = {c.number for c in first.citations}
        first.citations += [c for c in later.citations if c.number not in numbers]
        first.supported = first.supported and later.supported
        first.retrieved, first.left_out, first.timings = numbered, left_out, timings
        return first

    def _unknown_subject(self, question: str, found: list[Retrieved]) -> str | None:
        """The refusal for a question about something the passages found do not cover, if it is.

        That is a question naming something (a name or identifier: :meth:`Retriever.names`)
        that no document holds, or that none of the passages found mentions, whichever passage
        happens to be closest; unless a chunk is close enough to the question anyway
        (``retrieval.min_similarity_unknown_term``: "the Shimano battery" of a bike manual
        that names no make; on the R manuals, answerable questions whose words the passages
        inflect otherwise, "worksheet", "reusable", match at 0.61 and more).
        """
        floor = self.retriever.settings.min_similarity_unknown_term
        if max(chunk.similarity for chunk in found) >= floor:
            return None
        unknown = self.retriever.unknown_terms(question)
        if unknown:
            return "I don't know: the documents never mention " + _quoted_list(unknown)
        held = {_stem(word) for chunk in found for word in keywords(chunk.text)}
        absent = [name for name in self.retriever.names(question) if _stem(name) not in held]
        if absent:
            return "I don't know: no passage found for this question mentions " + _quoted_list(
                absent
            )
        return None

    def _fit(
        self, question: str, earlier: list[str], found: list[Retrieved], reserve: int
    ) -> tuple[list[Source], list[Retrieved]]:
        """Number the chunks that fit the token budget, best first; the rest are left out."""
        budget = (
            self.llm.context_size
            - reserve
            - self.llm.count_tokens(build_prompt(question, earlier, []).completion)
        )
        numbered: list[Source] = []
        left_out: list[Retrieved] = []
        for chunk in found:
            source = Source(len(numbered) + 1, chunk, excerpt(chunk, self.rules.excerpt_windows))
            cost = self.llm.count_tokens(source_block(source))
            if cost <= budget:
                numbered.append(source)
                budget -= cost
            else:
                left_out.append(chunk)
        return numbered, left_out


_SUFFIXES = ("ations", "ation", "ings", "ing", "ions", "ion", "ers", "er", "ed", "es", "s")


def _stem(word: str) -> str:
    """``word`` less an English inflection: "delete", "deleting", "deletion" are "delet"."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 4 else word


def _quoted_list(terms: list[str]) -> str:
    return ", ".join(f"“{term}”" for term in terms)


def _answer(question: str, checked: Checked) -> Answer:
    """The answer a checked first sentence makes (its sources and timings come later)."""
    return Answer(
        question,
        checked.text,
        checked.citations,
        refused=checked.refused,
        supported=checked.supported,
        model_text=checked.model_text,
    )


def _asked_as(
    settled: Generator[str, None, Answer], rewritten: str | None
) -> Generator[str, None, Answer]:
    answer = yield from settled
    answer.standalone_question = rewritten
    return answer


def _with_warning(
    settled: Generator[str, None, Answer], warning: str
) -> Generator[str, None, Answer]:
    answer = yield from settled
    answer.warnings.insert(0, warning)
    return answer


def _cut_at_markup_or_loop(raw: str, judged: int) -> tuple[str, str, bool]:
    """The model's text up to a chat-control spelling or a loop; the loop; whether it was cut.

    Text already judged (the first ``judged`` characters) is never cut.
    """
    raw, markup = cut_at_markup(raw)
    loop = loop_start(raw)
    if loop is None:
        return raw, "", markup
    cut = max(loop, judged)
    return raw[:cut].rstrip(), raw[cut:], True
