"""Where the model's text stops, and where its sentences end, while it is still being written.

An answer is shown a sentence at a time, each once the citation check has judged it, so no
front door shows text that the final answer takes back. Generation stops at a chat-control
spelling (the model copying document markup such as ``<end_of_turn>``) and when the text
starts repeating itself ("zpipe.c: zpipe.c: …", "[44] [44] [44]"). The sentence rule is
English punctuation: a sentence ends at '.', '!' or '?' (with closing quotes and ``[n]``
markers) followed by a capital, a digit or a quote, or at a line break; a period after a
digit or an initial ends none ("version 3. 4 items", "Philip A. Nelson"), nor does one inside
an open double quote.
"""

from __future__ import annotations

import re

# Special-token spellings a model may copy from a document or write itself: Gemma's turns,
# ChatML's <|im_start|>, Llama's [INST] and <<SYS>>, <s>/</s>, <eos>, DeepSeek's <｜…｜>.
CONTROL_SPELLING = re.compile(
    r"<\|[^|<>\s]{1,64}\|>|</?(?:start_of_turn|end_of_turn|eos|bos|s|pad|unk|eot_id)>"
    r"|\[/?INST\]|<</?SYS>>|<｜[^｜\s]{1,64}｜>",
    re.I,
)
_MARKER = re.compile(r"\[\d+(?:\s*,\s*\d+)*\][.,;:]?")
_TOKEN = re.compile(r"\S+")
_SENTENCE_END = re.compile(
    r"(?:(?<!\d)(?<!\b[A-Z])\.|[!?])[.!?]*[\"'”’)\]]*(?:\s*\[\d+(?:\s*,\s*\d+)*\])*[.,;:]?(?=\s)|\n"
)
_OPEN_MARKER = re.compile(r"\[[\d,\s]*")  # a marker still being written
_LONGEST_UNIT = 16  # tokens: a longer repeated run is a repeated paragraph, not a loop
_REPEATED_CHARS = re.compile(r"(\S{2,12}?)\1{5,}")  # "1.1.1.1.1.1.1" inside one word


def cut_at_markup(text: str) -> tuple[str, bool]:
    """``text`` up to its first chat-control spelling, and whether there was one."""
    found = CONTROL_SPELLING.search(text)
    if found is None:
        return text, False
    return text[: found.start()].rstrip(), True


def loop_start(text: str) -> int | None:
    """Where the text starts repeating itself, if it does; None when it does not.

    A loop is a phrase of up to 16 words said three times running (a single word or a pair
    four times), a run of four ``[n]`` markers with no word between them, or a few characters
    repeated six times inside a word ("2.4.1.1.1.1.1.1.1"). The text before
    the loop's first copy is what the model said before it looped.
    """
    chars = _REPEATED_CHARS.search(text)
    if chars is not None:
        return chars.start()
    spans = [(m.start(), m.group()) for m in _TOKEN.finditer(text)]
    words = [word for _, word in spans]
    markers = 0
    for i, word in enumerate(words):
        markers = markers + len(re.findall(r"\d+", word)) if _MARKER.fullmatch(word) else 0
        if markers >= 4:
            run = i
            while run > 0 and _MARKER.fullmatch(words[run - 1]):
                run -= 1
            return spans[run][0]
    for start in range(len(words)):
        for unit in range(1, min(_LONGEST_UNIT, (len(words) - start) // 3) + 1):
            times = 4 if unit <= 2 else 3
            if start + unit * times > len(words):
                continue
            first = words[start : start + unit]
            if all(words[start + k * unit : start + (k + 1) * unit] == first for k in range(times)):
                return spans[start][0]
    return None


def next_sentence(text: str, final: bool) -> int | None:
    """Where the first sentence of ``text`` ends (its end offset), once that is certain.

    ``final``: the model has stopped, so the text's end ends a sentence too. Whitespace after
    the end belongs to the next sentence.
    """
    for end in _SENTENCE_END.finditer(text):
        stop = end.end() if end.group() != "\n" else end.start()
        if end.group() != "\n" and _open_quote(text[:stop]):
            continue
        after = text[end.end() :].lstrip()
        if not after or _OPEN_MARKER.fullmatch(after):  # what comes next is not written yet
            return None if not final else len(text.rstrip())
        if end.group() == "\n" or after[0].isupper() or after[0].isdigit() or after[0] in "\"“'(":
            return stop
    return len(text.rstrip()) if final else None


def _open_quote(text: str) -> bool:
    straight = text.count('"') % 2 == 1
    return straight or text.count("“") > text.count("”")


def only_repeats(text: str) -> bool:
    """Whether ``text`` is one phrase said over and over ("zpipe.c: zpipe.c: …"), markers aside."""
    words = [w for w in _TOKEN.findall(_MARKER.sub(" ", text)) if w not in ("…", "...")]
    for unit in range(1, len(words) // 2 + 1):
        if len(words) % unit == 0 and words == words[:unit] * (len(words) // unit):
            return True
    return False
