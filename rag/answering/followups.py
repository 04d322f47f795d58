"""Follow-ups that find their subject: 'what does it return?' asked as a question that stands alone.

A follow-up leans on the conversation: 'it', 'its', 'that argument', 'a bare one', 'and for how
long?', 'what about X?'. Retrieval sees one question, so before it searches, the follow-up is
rewritten with the subject of the last question put in: after 'What does dict.popitem() do?',
'What error does it raise?' becomes 'What error does dict.popitem() raise?'. Retrieval then
searches with the question before it (as that one stood alone) and the rewritten follow-up: on
the public follow-up set, the earlier question's words find the gold page more often than the
follow-up alone. The model is shown the rewritten follow-up only. A question that stands alone
is left as it is, and searched alone, so a new subject is never answered from the last one's
documents.

An instruction-tuned model rewrites the follow-up itself (:func:`rewrite_with_model`), from the
conversation, whenever the rules find one; what it writes is used when it is one plausible
question, else the rules' rewrite is. The subject is the noun phrase the last question asks
about, found by rules (no model): the words after its question word and auxiliary verb ('What
does | the nonlocal statement | do?'), up to a verb or a preposition other than 'of'. A chain
of follow-ups keeps its subject.

Limits: English only; the rules know common verbs, not every verb, and put the subject in for
the first referring word only ('tells it to keep them' keeps 'them').
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.answering.answer import Turn
from rag.answering.prompt import fence
from rag.models.llm import LLM, LLMError, Prompt

_WORD = re.compile(r"(?<!\w)'[^']+'(?!\w)|\"[^\"]+\"|[\w'’.()\-/*]+|[^\w\s]")  # a quoted title: one
_ABOUT = re.compile(
    r"\b(?:say|says|said|know|tell|written|write|is there)\b[^?]*?\babout\s+(.+)", re.I
)
# Words that cannot be what a question is about ('What was wrong with X?': X is).
_NOT_SUBJECTS = frozenset(
    "wrong new true false possible available different special important known there here "
    "best better worse right the a an".split()
)
_FOLLOW_UP_START = re.compile(r"^\W*(and|but|or|also|so|then)\b[\s,]*", re.I)
_WHAT_ABOUT = re.compile(r"^\W*(?:and\s+)?(?:what|how)\s+about\s+(.+?)[\s?.!]*$", re.I)
_PRONOUNS = frozenset("it its it's they them their theirs he him his she her".split())
_DEMONSTRATIVES = frozenset("this that these those".split())
_QUESTION_WORDS = frozenset(
    "what which how when where why who whom whose in on for to from at by with of".split()
)
_AUXILIARIES = frozenset(
    "is are was were be been does do did can could should would will shall may might must "
    "has have had".split()
)
_DETERMINERS = frozenset("the a an".split())
_NAME = re.compile(r"[\w]+(?:\.[\w]+)+(?:\(\))?|\w+\(\)|__\w+__|\w*_\w+")  # code names
# Verbs that questions ask with: the subject ends before the last one of them.
_VERBS = frozenset(
    """
    do does did is are was were be been being have has had can could should would will may
    might must shall get gets set sets return returns raise raises take takes use uses mean
    means cover covers contain contains accept accepts support supports work works happen
    happens need needs require requires include includes allow allows make makes run runs
    call calls pass passes produce produces print prints write writes read reads handle
    handles behave behaves differ differs compare create creates load loads store stores keep
    keeps weigh weighs last lasts cost costs show shows go goes come comes give gives find
    finds point points refer refers treat treats bind binds look looks hold holds mark marks
    tell tells cause causes say says written made done given known seen found called used
    passed returned raised set taken
    """.split()
)
# Words that end a subject: prepositions but 'of', conjunctions, punctuation.
_BREAKS = frozenset(
    """
    in on at for to from by with without about into onto over under after before than as
    and or but if when while that which who whose where why how ? , ; : !
    """.split()
)
_EXPLETIVE_IT = re.compile(
    r"\b(?:does|did|will|would|can|could)\s+it\s+take\b|\bit\s+takes?\b|"
    r"\bis\s+it\s+(?:possible|true|necessary|safe|ok|okay|better|worth|allowed)\b",
    re.I,
)


@dataclass(frozen=True)
class FollowUp:
    """A follow-up as it stands alone, and the question before it as that one stood alone."""

    question: str
    earlier: str


def is_follow_up(question: str) -> bool:
    """Whether a chat question leans on the one before ('and its warranty?', 'how long is it?').

    With ``answer.rewrite_follow_ups`` off, such a question retrieves with the earlier question
    too; one that stands alone does not, so a new subject is never answered from the previous
    subject's documents.
    """
    words = set(re.findall(r"[a-z']+", question.lower()))
    leading = _FOLLOW_UP_START.match(question) or _WHAT_ABOUT.match(question)
    return bool(leading) or bool(words & (_PRONOUNS | _DEMONSTRATIVES | {"one"}))


def standalone_question(question: str, history: Sequence[Turn]) -> str:
    """``question`` as it would be asked alone, given the conversation before it.

    >>> standalone_question("What error does it raise?", [Turn("What does dict.popitem() do?", "")])
    'What error does dict.popitem() raise?'
    """
    found = rewrite_follow_up(question, history)
    return found.question if found else question


def rewrite_follow_up(question: str, history: Sequence[Turn]) -> FollowUp | None:
    """The follow-up rewritten to stand alone, or None when ``question`` stands alone already."""
    last, subject = "", ""
    for turn in history:
        asked = _with_subject(turn.question, last, subject) if subject else turn.question
        # A follow-up keeps the subject; a question that stands alone, or 'what about X?',
        # brings its own.
        if asked == turn.question or _WHAT_ABOUT.match(turn.question):
            subject = subject_of(asked) or subject
        last = asked
    rewritten = _with_subject(question, last, subject) if subject else question
    return FollowUp(rewritten, last) if rewritten != question else None


REWRITE_INSTRUCTIONS = (
    "Rewrite the user's last question so that it can be understood without the conversation: "
    "put in what words such as 'it', 'its', 'that' or 'they' refer to, and keep everything else. "
    "Reply with the rewritten question only."
)
_REWRITE_TOKENS = 96  # a rewritten question is short
_ANSWER_CHARS = 300  # of the last answer, shown to the model for what a pronoun may refer to


def rewrite_with_model(llm: LLM, question: str, history: Sequence[Turn], ruled: str) -> str:
    """The follow-up as the model rewrites it from the conversation; ``ruled`` if it cannot.

    Its reply is used when it is one line that ends in a question mark, is at most three times
    as long as the question and is not the question again; anything else (an answer, a
    refusal, a ramble, an echo) is not a rewrite.
    """
    turns = "".join(
        f"Question: {fence(turn.question)}\nAnswer: {fence(turn.answer)[:_ANSWER_CHARS]}\n"
        for turn in history[-2:]
    )
    user = f"Conversation:\n{turns}\nLast question: {fence(question)}\nRewritten question:"
    prompt = Prompt(
        messages=[
            {"role": "system", "content": REWRITE_INSTRUCTIONS},
            {"role": "user", "content": user},
        ],
        completion=f"{REWRITE_INSTRUCTIONS}\n\n{user}",
        completion_stop=("\n",),
        temperature=0.0,
        max_tokens=_REWRITE_TOKENS,
    )
    try:
        written = "".join(llm.stream(prompt)).strip().strip('"').strip()
    except LLMError:
        return ruled
    plausible = (
        written.endswith("?")
        and "\n" not in written
        and 0 < len(written) <= 3 * max(len(question), 40)
        and written.casefold() != question.strip().casefold()  # an echo rewrites nothing
    )
    return written if plausible else ruled


def subject_of(question: str) -> str:
    """The noun phrase a question asks about ('' when the rules find none).

    >>> subject_of("How long does a full charge of the battery take?")
    'a full charge of the battery'
    """
    about = _ABOUT.search(question)  # 'What does the manual say about X?': X
    words = _WORD.findall(about.group(1) if about else question)
    start = 0
    while start < len(words) and words[start].lower() in _QUESTION_WORDS:
        start += 1
    # 'Which compression level does X use': the asked-for phrase goes before the auxiliary.
    auxiliary = next(
        (i for i in range(start, min(start + 4, len(words))) if words[i].lower() in _AUXILIARIES),
        None,
    )
    if auxiliary is not None and not about:
        start = auxiliary + 1
    while start < len(words):
        end = start
        while end < len(words) and words[end].lower() not in _BREAKS:
            end += 1
        phrase = _up_to_its_verb(words[start:end])
        if phrase and not all(w.lower() in _NOT_SUBJECTS for w in phrase):
            return _joined(phrase)
        start = end + 1  # 'wrong | with | LAPACK 3.9.0': past the break
    return ""


def _up_to_its_verb(phrase: list[str]) -> list[str]:
    """A subject less its verb.

    'the raise statement | do', 'floating point literals | written', 'expressions | be given'.
    """
    lowered = [w.lower() for w in phrase]
    auxiliary = next((i for i, w in enumerate(lowered) if i and w in _AUXILIARIES), None)
    verbs = [i for i, word in enumerate(lowered) if word in _VERBS]
    if auxiliary is not None:  # 'the raise statement | do': the verb is the auxiliary
        phrase = phrase[:auxiliary]
    elif verbs and verbs[-1] > 0:  # else the last verb: 'floating point literals | written'
        phrase = phrase[: verbs[-1]]
    if phrase and phrase[-1].lower() == "of":
        phrase = phrase[:-1]
    if all(w.lower() in _DETERMINERS | _PRONOUNS for w in phrase):
        return []
    return phrase


def _with_subject(question: str, last: str, subject: str) -> str:
    """The question with ``subject`` put in for its first referring word, if it has one.

    ``last`` is the question before, as it stood alone: 'what about X?' asks it again of X.
    """
    about = _WHAT_ABOUT.match(question)
    if about:
        return _asked_of(last, subject, about.group(1))
    words = _WORD.findall(question)
    lowered = [w.lower() for w in words]
    expletive = bool(_EXPLETIVE_IT.search(question))
    leads = _QUESTION_WORDS | _AUXILIARIES | _VERBS | _BREAKS
    for i, word in enumerate(lowered):
        before = lowered[i - 1] if i else ""
        following = lowered[i + 1] if i + 1 < len(words) else "?"
        if word in _PRONOUNS and not (expletive and word == "it"):
            put = _possessive(subject) if word in ("its", "their", "theirs", "his") else subject
            return _put_in(words, i, put)
        if word in _DEMONSTRATIVES and (not before or before in leads):
            if following in _VERBS | _BREAKS:  # 'what does that mean?', 'is this the default?'
                return _put_in(words, i, subject)
            if following in subject.lower().split():  # 'that statement': the nonlocal one
                return _put_in([*words[:i], *words[i + 1 :]], i, subject)
            return _put_in(words, i, _possessive(subject))  # 'that argument': its argument
        if word in ("one", "ones") and before not in ("", "which", "any", "every", "no"):
            core = subject.split(" ", 1)[1] if subject.split()[0] in _DETERMINERS else subject
            if " " in subject or before in _DETERMINERS:
                return _put_in(words, i, core)  # 'a bare one': a bare raise statement
    leading = _FOLLOW_UP_START.match(question)
    if leading:  # 'and for how many charge cycles?': about the same subject
        rest = question[leading.end() :].strip().rstrip("?.! ")
        return f"{rest[:1].upper()}{rest[1:]}, regarding {subject}?"
    return question


def _asked_of(last: str, subject: str, other: str) -> str:
    """The question ``last`` asked of ``other`` in place of ``subject``.

    The name in the subject is replaced when there is one ('the default maxsize of
    functools.lru_cache' -> 'of functools.cache'), else the whole subject.
    """
    names = _NAME.findall(subject)
    if names and _NAME.fullmatch(other.strip()):
        return last.replace(names[-1], other.strip(), 1)
    if subject in last:
        return last.replace(subject, other.strip(), 1)
    return f"{last.rstrip('?.! ')}, regarding {other.strip()}?"


def _possessive(subject: str) -> str:
    """'the warranty's', 'floating point literals'', 'gzip.compress's'."""
    plural = subject.endswith("s") and not subject.endswith("'s") and not _NAME.fullmatch(subject)
    return subject + ("'" if plural else "'s")


def _put_in(words: list[str], at: int, subject: str) -> str:
    """The question with word ``at`` replaced by ``subject``, as a sentence."""
    text = _joined([*words[:at], subject, *words[at + 1 :]])
    return text[:1].upper() + text[1:]


def _joined(words: list[str]) -> str:
    """Words joined back with spaces, but none before closing punctuation."""
    return re.sub(r" ([?,;:!])", r"\1", " ".join(words))
