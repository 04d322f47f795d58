"""The citation check and the quote policy: an answer's text judged against its sources.

Markers that point at no source are dropped; a marker whose source does not hold the claim
(most of its words and every figure) moves to the source that does; an answer without markers
cites the source holding most of its words. An answer no source holds, or one the passage
matching the question best does not hold (nor the text right after it, when that passage runs
on), is replaced by a quote of that passage, as ``answer.quote`` (a :class:`QuotePolicy`) says;
so is an "I don't know" beside a passage that plainly matches. Limits: what counts as a refusal
is English ("I don't know"), and support is the share of the answer's words a source holds, so
a paraphrase in other words counts as unsupported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rag.answering.answer import Citation, Source
from rag.answering.prompt import clean, fence
from rag.answering.rules import BASE
from rag.answering.settling import cut_at_markup, only_repeats
from rag.retrieval.retriever import Retrieved, sentences
from rag.settings import AnswerSettings, QuotePolicy
from rag.storage.keywords import keywords
from rag.storage.records import next_position, position


@dataclass
class Checked:
    """An answer's text once checked: what to show, what it cites, what the model wrote."""

    text: str
    citations: list[Citation] = field(default_factory=list)
    refused: bool = False
    supported: bool = True
    model_text: str | None = None  # what the model wrote, when a quote replaced it


def check_answer(raw: str, numbered: list[Source], settings: AnswerSettings) -> Checked:
    """Map markers to sources, cite the passage that holds the answer, check support.

    A marker the model wrote is kept when its source holds the answer; otherwise, and when
    the model wrote none, the citation goes to the source holding most of the answer's
    words, ties to the one matching the question best. An answer no source holds is
    replaced by a quote of the passage that matches the question best (``answer.quote``),
    and so is a refusal when that passage matches well (``answer.quote_over_refusal``).
    """
    by_number = {source.number: source for source in numbered}
    text, labelled = _without_label(raw.strip(), numbered)
    text, cited = resolve_markers(text, set(by_number))
    refused = is_refusal(text)
    mode = settings.quote or BASE.quote  # unset outside an answerer: the bundled model's
    passages = best_passage(numbered) if mode != QuotePolicy.NEVER else []
    if refused:
        written = text or "I don't know."
        text = text if _has_words(text) else "I don't know."
        best = passages[0][0] if passages else None
        if best is None or _best_window(best.chunk) < settings.quote_over_refusal:
            return Checked(text, refused=True)
        quoted = quote(passages[0], settings)  # the documents plainly hold a passage on it
        return Checked(quoted, _citations([best.number], by_number, False), model_text=written)
    least = settings.min_support
    by_model = bool(cited) and any(_holds(text, by_number[n]) >= least for n in cited)
    if not by_model:
        cited = []
        ranked = sorted(
            (s for s in numbered if _holds(text, s) >= settings.min_attribution),
            key=lambda s: (-_holds(text, s), s.number != labelled, -_best_window(s.chunk)),
        )
        if ranked:
            cited = [ranked[0].number]
            text = _cite(text, ranked[0].number)
    cited_text = " ".join(by_number[n].chunk.text for n in cited)
    supported = (
        bool(cited)
        and support(text, cited_text) >= least
        and _numbers(text) <= _numbers(cited_text)
    )
    model_text = None
    if passages:
        holder = next(
            (
                source
                for source, passage in passages
                if support(text, passage) >= least and _numbers(text) <= _numbers(passage)
            ),
            None,
        )
        if holder is not None and mode == QuotePolicy.OFF_PASSAGE and cited != [holder.number]:
            cited, by_model = [holder.number], False  # the passage that answers, cited
            text = _cite(text, holder.number)
        elif not supported or (mode == QuotePolicy.OFF_PASSAGE and holder is None):
            model_text = text
            text = quote(passages[0], settings)
            cited, by_model, supported = [passages[0][0].number], False, True
    citations = _citations(cited, by_number, by_model)
    return Checked(text, citations, supported=supported, model_text=model_text)


def quote(passage: tuple[Source, str], settings: AnswerSettings) -> str:
    """The passage quoted and cited, up to any chat markup the document holds."""
    source, text = passage
    text = cut_at_markup(text)[0]
    return f'"{_cut(text, settings.quote_chars)}" [{source.number}]'


_REFUSAL = re.compile(r"^\W*(i do not know|i don['’]?t know|i cannot tell|unknown)\b", re.I)


_MARKER_GROUP = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


class LaterSentences:
    """The sentences after an answer's first: each stands when a source holds it."""

    def __init__(self, settings: AnswerSettings, numbered: list[Source]) -> None:
        self.settings = settings
        self.by_number = {source.number: source for source in numbered}
        self.said: list[str] = []
        self.citations: list[Citation] = []
        self.supported = True
        self.warnings: list[str] = []
        self._seen: set[str] = set()

    def judge(self, sentence: str, gap: str) -> tuple[str, bool]:
        """The sentence as shown (after ``gap``, its marker checked), and whether to stop."""
        text, cited = resolve_markers(sentence, set(self.by_number))
        said = " ".join(keywords(text))
        if not _has_words(text) or said in self._seen:
            return "", True  # markers or punctuation alone, or the model repeating itself
        self._seen.add(said)
        least = self.settings.min_support
        by_model = [n for n in cited if _holds(text, self.by_number[n]) >= least]
        if not by_model:
            held = max(self.by_number.values(), key=lambda s: _holds(text, s))
            if _holds(text, held) >= least:
                text, cited = _cite(text, held.number), [held.number]
            elif (self.settings.quote or BASE.quote) != QuotePolicy.NEVER:
                self.warnings.append(
                    "the model went on beyond what its sources hold; the rest was left out"
                )
                return "", True
            else:
                self.supported = False
        shown = (gap or " ") + text
        self.said.append(shown)
        self.citations += _citations(cited, self.by_number, bool(by_model))
        return shown, False


def is_refusal(text: str) -> bool:
    """Whether an answer says it does not know (in English), or says nothing at all."""
    return bool(_REFUSAL.match(text)) or not _has_words(text)


def _has_words(text: str) -> bool:
    """Whether ``text`` says anything: more than markers, punctuation or one phrase repeated."""
    return bool(re.search(r"\w", _MARKER_GROUP.sub(" ", text))) and not only_repeats(text)


def _citations(cited: list[int], by_number: dict[int, Source], by_model: bool) -> list[Citation]:
    return [
        Citation(
            n,
            by_number[n].source,
            by_number[n].page,
            by_number[n].excerpt,
            by_number[n].chunk.similarity,
            by_number[n].chunk.also_in,
            by_model,
            by_number[n].location,
        )
        for n in cited
    ]


def _holds(answer: str, source: Source) -> float:
    """Share of the answer's words (and all of its figures, or nothing) that the source holds."""
    if not _numbers(answer) <= _numbers(source.chunk.text):
        return 0.0
    return support(answer, source.chunk.text)


def _best_window(chunk: Retrieved) -> float:
    return max(chunk.window_scores, default=chunk.similarity)


def best_passage(numbered: list[Source]) -> list[tuple[Source, str]]:
    """The sentence pair that matches the question best, then what follows it if it runs on.

    Each comes with its source. The answer to a question is in the passage that matches it,
    or right after it when the passage ends unfinished (cut at a chunk's end) or introduces
    what follows (':'). What follows may be in the next chunk of the file, when that is a
    source too. Ties go to the better-ranked source.
    """
    best = max(numbered, key=lambda s: (_best_window(s.chunk), -s.number), default=None)
    if best is None:
        return []
    chunk = best.chunk
    parts = sentences(chunk.text)
    first = chunk.best_windows[0] if chunk.best_windows else len(parts)
    if first >= len(parts):  # not ranked by sentence: the chunk is the passage
        return [(best, fence(clean(chunk.text)))]
    found = [(best, fence(clean(" ".join(parts[first : first + 2]))))]
    if parts[min(first + 1, len(parts) - 1)].endswith((".", "!", "?")):
        return found  # a finished statement: what follows is another one
    after = _opening(parts[first + 2 :], _FOLLOWING_CHARS)
    if after:
        found.append((best, after))
    following = _next_source(best, numbered)
    if len(after) < _FOLLOWING_CHARS and following is not None:
        rest = _FOLLOWING_CHARS - len(after)
        found.append((following, _opening(sentences(following.chunk.text), rest)))
    return found


_FOLLOWING_CHARS = 400  # how far after the best sentence pair an answer may be


def _opening(parts: list[str], limit: int) -> str:
    """The first of these sentences, as many as fit in ``limit`` characters (at least one)."""
    taken: list[str] = []
    for part in parts:
        if taken and sum(len(t) + 1 for t in taken) + len(part) > limit:
            break
        taken.append(part)
    return fence(clean(" ".join(taken)))


def _next_source(source: Source, numbered: list[Source]) -> Source | None:
    """The source holding the chunk that comes next in the same file, if one does."""
    if "chunk_index" not in source.chunk.metadata:
        return None
    after = next_position(source.chunk.metadata)
    for other in numbered:
        if "chunk_index" in other.chunk.metadata and position(other.chunk.metadata) == after:
            return other
    return None


def _cite(text: str, number: int) -> str:
    """``text`` with its markers replaced by one ``[number]`` at the end."""
    return f"{resolve_markers(text, set())[0]} [{number}]"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"


def _without_label(text: str, numbered: list[Source]) -> tuple[str, int | None]:
    """The answer less the source labels the model copied at its start ('R-data.pdf, page 19: …').

    Also the number of the first source so named, if one was. An answer of labels alone is
    left empty: it says nothing.
    """
    named = None
    labels = {fence(source.label) + ":": source.number for source in numbered}
    while label := next((lb for lb in labels if _without_markers(text).startswith(lb)), None):
        text = _without_markers(text)[len(label) :].strip().lstrip("…").strip()
        named = labels[label] if named is None else named
    return text, named


def _without_markers(text: str) -> str:
    """``text`` less a leading ``[n]`` marker ("[1] R-data.pdf, page 19: …", as numbered)."""
    return re.sub(r"^\[\d+\]\s*", "", text)


def resolve_markers(text: str, valid: set[int]) -> tuple[str, list[int]]:
    """Keep the ``[n]`` markers that name a source (in order of first use), drop the others.

    ``[1, 3]`` counts as two markers; a group left with no valid number is removed whole.
    """
    cited: list[int] = []

    def keep_valid(match: re.Match[str]) -> str:
        numbers = [int(n) for n in match.group(1).split(",")]
        kept = [n for n in numbers if n in valid]
        for n in kept:
            if n not in cited:
                cited.append(n)
        return "".join(f"[{n}]" for n in kept)

    cleaned = _MARKER_GROUP.sub(keep_valid, text)
    return re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", cleaned)).strip(), cited


def _numbers(text: str) -> set[str]:
    """The figures in ``text`` (citations aside): an invented one is the costliest error."""
    return set(re.findall(r"\d+(?:[.,]\d+)*", _MARKER_GROUP.sub(" ", text)))


def support(answer: str, evidence: str) -> float:
    """Share of the answer's keywords (citations aside) that occur in ``evidence``."""
    words = set(keywords(_MARKER_GROUP.sub(" ", answer)))
    if not words:
        return 1.0
    return len(words & set(keywords(evidence))) / len(words)
