"""An in-memory BM25 keyword index over chunks, updated chunk by chunk.

Dense embeddings miss exact words a question shares with the right passage (an identifier such
as ``popitem``, a rare term); BM25 finds them. Postings are per term, so adding or removing a
chunk touches only its own terms and the index follows every write to the store cheaply.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

_TOKEN = re.compile(r"[a-z0-9_]+")
_STOPWORDS = frozenset(
    (
        "a an and are as at be by can do does for from has have how i if in into is it its of "
        "on or that the their there these this to was what when where which who why will with"
    ).split()
)


def keywords(text: str) -> list[str]:
    """Lower-case words and identifiers, no stop words: 'The d.popitem()' -> ['d', 'popitem']."""
    return [token for token in _TOKEN.findall(text.lower()) if token not in _STOPWORDS]


class KeywordIndex:
    """Okapi BM25 over chunk ids."""

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
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
        self.remove(chunk_id)
        terms = Counter(keywords(text))
        for term, frequency in terms.items():
            self.postings.setdefault(term, {})[chunk_id] = frequency
        self.lengths[chunk_id] = sum(terms.values())
        self.terms[chunk_id] = tuple(terms)
        self.total_length += self.lengths[chunk_id]

    def remove(self, chunk_id: str) -> None:
        """Forget ``chunk_id``; nothing happens when it is not indexed."""
        length = self.lengths.pop(chunk_id, None)
        if length is None:
            return
        self.total_length -= length
        for term in self.terms.pop(chunk_id):
            chunks = self.postings[term]
            del chunks[chunk_id]
            if not chunks:
                del self.postings[term]

    def search(
        self, query: str, n: int, allowed: Callable[[str], bool] | None = None
    ) -> list[tuple[str, float]]:
        """The ``n`` best (chunk id, score) pairs for ``query``, best first; score > 0."""
        if not self.lengths:
            return []
        count = len(self.lengths)
        average = self.total_length / count
        scores: dict[str, float] = {}
        for term in set(keywords(query)):
            chunks = self.postings.get(term)
            if not chunks:
                continue
            idf = math.log((count - len(chunks) + 0.5) / (len(chunks) + 0.5) + 1)
            for chunk_id, frequency in chunks.items():
                if allowed is not None and not allowed(chunk_id):
                    continue
                norm = self.k1 * (1 - self.b + self.b * self.lengths[chunk_id] / average)
                gain = idf * frequency * (self.k1 + 1) / (frequency + norm)
                scores[chunk_id] = scores.get(chunk_id, 0.0) + gain
        return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:n]
