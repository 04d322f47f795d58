"""An in-memory BM25 keyword index over chunks, updated chunk by chunk.

Dense embeddings miss exact words a question shares with the right passage (an identifier such
as ``popitem``, a rare term); BM25 finds them. Postings are per term, so adding or removing a
chunk touches only its own terms and the index follows every write to the store cheaply.

Words are Unicode words, case-folded with accents removed ("Größe" and "Grosse" match). Chinese,
Japanese and Korean text has no spaces between words, so it is indexed by character pairs
(bigrams), as search engines' CJK analyzers do. Limits: stop words are English only; BM25
does no stemming in any language ("pumps" does not match "pump"); ``singular`` folds English
plurals only, for ranking sentences.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable

_WORD = re.compile(r"\w+")
# Han, Hiragana, Katakana (with the prolonged sound mark), Hangul: written without spaces.
_CJK = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]+)")
_STOPWORDS = frozenset(
    (
        "a an and are as at be by can do does for from has have how i if in into is it its of "
        "on or that the their there these this to was what when where which who why will with"
    ).split()
)


_ACCENTS = re.compile("[\u0300-\u036f]")  # Latin, Greek and Cyrillic diacritics only


def keywords(text: str) -> list[str]:
    """Folded words and identifiers, no stop words: 'The d.popitem()' -> ['d', 'popitem']."""
    found: list[str] = []
    for word in _WORD.findall(_fold(text)):
        for n, part in enumerate(_CJK.split(word)):
            if n % 2:  # a run of CJK characters: its character pairs
                found += [part[i : i + 2] for i in range(max(1, len(part) - 1))]
            elif part and part not in _STOPWORDS:
                found.append(part)
    return found


def singular(term: str) -> str:
    """An English plural's singular, roughly ('vectors' -> 'vector', 'classes' -> 'class')."""
    if len(term) <= 3 or not term.endswith("s") or term.endswith(("ss", "us", "is")):
        return term
    if term.endswith("sses"):
        return term[:-2]
    if term.endswith("ies") and len(term) > 4:
        return term[:-3] + "y"
    return term[:-1]


def _fold(text: str) -> str:
    """Case-folded, accents removed: 'Größe' -> 'grosse', 'naïve' -> 'naive'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return unicodedata.normalize("NFC", _ACCENTS.sub("", decomposed))


class KeywordIndex:
    """Okapi BM25 over chunk ids; safe to search from one thread while another updates it."""

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        self._lock = threading.RLock()
        self.k1 = k1
        self.b = b
        self.postings: dict[str, dict[str, int]] = {}  # term -> {chunk id: term frequency}
        self.lengths: dict[str, int] = {}  # chunk id -> number of terms
        self.terms: dict[str, tuple[str, ...]] = {}  # chunk id -> its distinct terms
        self.total_length = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self.lengths

    def add(self, chunk_id: str, text: str) -> None:
        """Index ``text`` under ``chunk_id`` (replacing what it held)."""
        with self._lock:
            self._add(chunk_id, text)

    def _add(self, chunk_id: str, text: str) -> None:
        self._remove(chunk_id)
        terms = Counter(keywords(text))
        for term, frequency in terms.items():
            self.postings.setdefault(term, {})[chunk_id] = frequency
        self.lengths[chunk_id] = sum(terms.values())
        self.terms[chunk_id] = tuple(terms)
        self.total_length += self.lengths[chunk_id]

    def remove(self, chunk_id: str) -> None:
        """Forget ``chunk_id``; nothing happens when it is not indexed."""
        with self._lock:
            self._remove(chunk_id)

    def _remove(self, chunk_id: str) -> None:
        length = self.lengths.pop(chunk_id, None)
        if length is None:
            return
        self.total_length -= length
        for term in self.terms.pop(chunk_id):
            chunks = self.postings[term]
            del chunks[chunk_id]
            if not chunks:
                del self.postings[term]

    def weights(self, query: str) -> dict[str, float]:
        """Each distinct query keyword's BM25 inverse document frequency (rare words weigh most).

        A word no chunk holds gets the highest weight there is: it is as rare as can be.
        """
        with self._lock:
            count = len(self.lengths)
            return {
                term: _idf(count, len(self.postings.get(term, ()))) for term in set(keywords(query))
            }

    def vocabulary_has(self, term: str) -> bool:
        """Whether any indexed chunk holds the (folded) ``term``."""
        with self._lock:
            return term in self.postings

    def search(
        self, query: str, n: int, allowed: Callable[[str], bool] | None = None
    ) -> list[tuple[str, float]]:
        """The ``n`` best (chunk id, score) pairs for ``query``, best first; score > 0."""
        with self._lock:
            return self._search(query, n, allowed)

    def _search(
        self, query: str, n: int, allowed: Callable[[str], bool] | None
    ) -> list[tuple[str, float]]:
        if not self.lengths:
            return []
        count = len(self.lengths)
        average = self.total_length / count
        scores: dict[str, float] = {}
        for term in set(keywords(query)):
            chunks = self.postings.get(term)
            if not chunks:
                continue
            idf = _idf(count, len(chunks))
            for chunk_id, frequency in chunks.items():
                if allowed is not None and not allowed(chunk_id):
                    continue
                norm = self.k1 * (1 - self.b + self.b * self.lengths[chunk_id] / average)
                gain = idf * frequency * (self.k1 + 1) / (frequency + norm)
                scores[chunk_id] = scores.get(chunk_id, 0.0) + gain
        return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:n]


def _idf(count: int, holding: int) -> float:
    """BM25's inverse document frequency of a term that ``holding`` of ``count`` chunks hold."""
    return math.log((count - holding + 0.5) / (holding + 0.5) + 1)
