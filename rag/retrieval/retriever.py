"""Find the chunks that answer a question: dense search fused with BM25 keywords.

Dense similarity finds passages that mean the same; BM25 finds the ones that share the rare
words and identifiers of the question. Their rankings are fused by reciprocal rank (RRF),
which needs no score calibration between the two. Then chunks below the relevance floor go,
near-duplicates of a better chunk go (their sources are kept as ``also_in``), and an optional
MMR pass trades rank for variety. Last, the top k are ordered by the better of the chunk's
similarity and its best sentence pair's: a long chunk whose one sentence answers the question
is diluted as a whole, but not sentence by sentence; a sentence pair's keyword share folds
English plurals ("vectors" holds "vector"). A chunk with one of its two best sentence pairs at
its end is read on into the next chunk of its page (``read_on``): a PDF page is cut by size,
and the table a sentence introduces lands in the chunk after it. Limits: reading on stays
within one page; plural folding is English only.

The keyword index is the store's (``rag.storage.keywords``): a file every process shares, written
with the chunks, so a new process searches at once and none re-reads the store. BM25 runs in a
thread of its own while Chroma searches (SQLite leaves Python's lock while it works): at a million
chunks each takes about as long as the other. Not while the model embeds the question: on 2 cores
the two then slow each other down.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.models.embeddings import Embedder
from rag.settings import RetrievalSettings
from rag.storage.keywords import keywords, singular
from rag.storage.records import Metadata, StoredChunk
from rag.storage.store import ChunkStore

if TYPE_CHECKING:
    from numpy.typing import NDArray


@dataclass(frozen=True)
class Retrieved:
    """A chunk found for a question, with the evidence for it."""

    id: str
    text: str
    metadata: Metadata
    similarity: float  # cosine similarity to the question
    keyword_score: float  # BM25; 0 when no question word is in the chunk
    fused_score: float  # reciprocal rank fusion of the dense and keyword ranks; higher is better
    embedding: NDArray[np.float32]
    also_in: tuple[str, ...] = ()  # other sources holding a near-identical passage
    best_windows: tuple[int, ...] = ()  # sentence windows, best match first (sentence_rerank)
    window_scores: tuple[float, ...] = ()  # each window's match to the question, in text order


class Retriever:
    """Hybrid retrieval over a :class:`ChunkStore`."""

    def __init__(self, settings: RetrievalSettings, store: ChunkStore, embedder: Embedder) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self._sentence_vectors: OrderedDict[str, NDArray[np.float32]] = OrderedDict()
        self._sentence_lock = threading.Lock()
        # One thread: searches share one SQLite connection and its lock anyway.
        self._keyword_thread = ThreadPoolExecutor(1, thread_name_prefix="keyword-search")
        self.overlap_searches = True  # False: BM25 after Chroma's search (benchmarks compare)

    def retrieve(
        self,
        query: str,
        k: int | None = None,
        sources: Collection[str] | None = None,
        file_types: Collection[str] | None = None,
        hybrid: bool | None = None,
    ) -> list[Retrieved]:
        """The best ``k`` chunks for ``query``, optionally only from these sources or types.

        ``hybrid`` overrides the setting for this query (the chat UI's switch).
        """
        k = k or self.settings.k
        settings = self.settings
        if hybrid is not None:
            settings = settings.model_copy(update={"hybrid": hybrid})
        question = self.embedder.embed([query])[0]
        search_keywords = partial(
            self.keyword_hits, query, settings.candidates, sources, file_types
        )
        keyword_search: Future[list[tuple[str, float]]] | None = None
        if settings.hybrid and self.overlap_searches:
            keyword_search = self._keyword_thread.submit(search_keywords)
        candidates: dict[str, Retrieved] = {}
        fused: dict[str, float] = {}

        for rank, hit in enumerate(
            self.store.query(question, settings.candidates, sources, file_types)
        ):
            candidates[hit.id] = Retrieved(
                hit.id, hit.text, hit.metadata, 1 - hit.distance, 0.0, 0.0, hit.embedding
            )
            fused[hit.id] = 1 / (settings.rrf_k + rank + 1)

        if settings.hybrid:
            keyword_hits = keyword_search.result() if keyword_search else search_keywords()
            unseen = [chunk_id for chunk_id, _ in keyword_hits if chunk_id not in candidates]
            fetched = self.store.get(unseen)
            if len(fetched) < len(unseen):  # removed since the index last looked
                self.store.prune(set(unseen) - {chunk.id for chunk in fetched})
            for chunk in fetched:
                similarity = float(np.dot(chunk.embedding, question))
                candidates[chunk.id] = Retrieved(
                    chunk.id, chunk.text, chunk.metadata, similarity, 0.0, 0.0, chunk.embedding
                )
            for rank, (chunk_id, keyword_score) in enumerate(keyword_hits):
                if chunk_id not in candidates:  # removed since the index last looked
                    continue
                fused[chunk_id] = fused.get(chunk_id, 0.0) + settings.keyword_weight / (
                    settings.rrf_k + rank + 1
                )
                candidates[chunk_id] = _with(candidates[chunk_id], keyword_score=keyword_score)

        relevant = self._relevant(candidates, question, settings, k)
        ranked = [
            _with(candidates[chunk_id], fused_score=score)
            for chunk_id, score in sorted(fused.items(), key=lambda item: -item[1])
            if chunk_id in relevant
        ]
        ranked = _content_first(_without_near_duplicates(ranked, settings.duplicate_similarity))
        found = top = _mmr(ranked, question, k, settings.mmr_lambda) if settings.mmr else ranked[:k]
        if settings.sentence_rerank:
            weights = self._term_weights(query, settings)
            found = self._by_best_sentence(top, question, weights)
            if settings.read_on:
                found, absorbed = self._read_on(found, question, weights)
                taken = absorbed | {chunk.id for chunk in top}
                spare = [chunk for chunk in ranked if chunk.id not in taken][: k - len(found)]
                if spare:
                    found = self._by_best_sentence(found + spare, question, weights)
        return _content_first(found)

    def _relevant(
        self,
        candidates: dict[str, Retrieved],
        question: NDArray[np.float32],
        settings: RetrievalSettings,
        k: int,
    ) -> set[str]:
        """Ids of the chunks over the relevance floor.

        When fewer than ``k`` are, a chunk under it still counts when it matches keywords (among
        the ``k`` best such) and one of its sentence pairs is ``min_sentence_similarity``
        similar: a long chunk whose one sentence answers is diluted as a whole, not sentence by
        sentence. (Only then: embedding those sentences costs a question ~0.4 s on 2 cores.)
        """
        relevant = {i for i, c in candidates.items() if c.similarity >= settings.min_similarity}
        if len(relevant) >= k:
            return relevant
        below = sorted(
            (c for c in candidates.values() if c.id not in relevant and c.keyword_score > 0),
            key=lambda c: -c.keyword_score,
        )[:k]
        if below and settings.sentence_rerank:
            for chunk, vectors in zip(below, self.sentence_vectors(below), strict=True):
                if float((vectors @ question).max()) >= settings.min_sentence_similarity:
                    relevant.add(chunk.id)
        return relevant

    def sentence_vectors(self, chunks: list[Retrieved]) -> list[NDArray[np.float32]]:
        """Embeddings of each chunk's sentence windows (see :func:`sentence_windows`), cached."""
        with self._sentence_lock:
            return self._sentence_vectors_unlocked(chunks)

    def _sentence_vectors_unlocked(self, chunks: list[Retrieved]) -> list[NDArray[np.float32]]:
        missing = {
            _content_key(c): c for c in chunks if _content_key(c) not in self._sentence_vectors
        }
        windows = [sentence_windows(c.text) for c in missing.values()]
        if missing:
            vectors = self.embedder.embed([w for group in windows for w in group])
            start = 0
            for key, group in zip(missing, windows, strict=True):
                self._sentence_vectors[key] = vectors[start : start + len(group)]
                start += len(group)
        found = []
        for chunk in chunks:
            self._sentence_vectors.move_to_end(_content_key(chunk))
            found.append(self._sentence_vectors[_content_key(chunk)])
        while len(self._sentence_vectors) > _SENTENCE_CACHE_SIZE:
            self._sentence_vectors.popitem(last=False)
        return found

    def _by_best_sentence(
        self, chunks: list[Retrieved], question: NDArray[np.float32], weights: dict[str, float]
    ) -> list[Retrieved]:
        """Order by the better of each chunk's similarity and its best sentence pair's.

        Each chunk's sentence pairs are ranked too (``best_windows``), by their similarity plus
        ``sentence_keyword_weight`` times the share of the question's rare words they hold: the
        sentence that names the question's identifier is the one that answers it.
        """
        best: dict[str, float] = {}
        ranked: list[Retrieved] = []
        for chunk, vectors in zip(chunks, self.sentence_vectors(chunks), strict=True):
            similarities = vectors @ question
            best[chunk.id] = max(chunk.similarity, float(similarities.max()))
            shares = keyword_shares(sentence_windows(chunk.text), weights)
            scores = [
                float(similarity) + self.settings.sentence_keyword_weight * share
                for similarity, share in zip(similarities, shares, strict=True)
            ]
            order = tuple(sorted(range(len(scores)), key=lambda i: -scores[i]))
            ranked.append(_with(chunk, best_windows=order, window_scores=tuple(scores)))
        return sorted(ranked, key=lambda chunk: -best[chunk.id])

    def _read_on(
        self, chunks: list[Retrieved], question: NDArray[np.float32], weights: dict[str, float]
    ) -> tuple[list[Retrieved], set[str]]:
        """Continue each chunk whose best sentence pair ends it with the next chunk of its page.

        The sentence that matches a question often introduces what answers it (a table, a list,
        the next paragraph), and that lands in the next chunk, which alone matches poorly.
        Also the ids of the chunks so read into another, which are returned no more.
        """
        ending = [chunk for chunk in chunks if _runs_on(chunk)]
        continued: dict[str, Retrieved] = {}
        absorbed: set[str] = set()
        following = self.store.next_chunks([c.metadata for c in ending])
        for chunk, after in zip(ending, following, strict=True):
            if after is None or after.metadata.get("page") != chunk.metadata.get("page"):
                continue
            similarity = max(chunk.similarity, float(np.dot(after.embedding, question)))
            continued[chunk.id] = _with(_continued(chunk, after), similarity=similarity)
            absorbed.add(after.id)
        if not continued:
            return chunks, absorbed
        kept = [continued.get(c.id, c) for c in chunks if c.id not in absorbed]
        return self._by_best_sentence(kept, question, weights), absorbed

    def _term_weights(self, query: str, settings: RetrievalSettings) -> dict[str, float]:
        """The query's words by rarity, when sentences are weighed by them."""
        if not settings.sentence_keyword_weight:
            return {}
        return self.store.term_weights(query)

    def unknown_terms(self, query: str) -> list[str]:
        """The query's names (:meth:`names`) that no chunk holds ('xgboost', 'middlemarch').

        A plural counts as known when its singular is ('exceptiongroups').
        """
        names = {
            term: {term, term.removesuffix("s"), term.removesuffix("es")}
            for term in self.names(query)
        }
        known = self.store.known_words(set().union(*names.values()))
        return [term for term, forms in names.items() if not forms & known]

    def names(self, query: str) -> list[str]:
        """The query's names and identifiers, as keywords ('xgboost', 'zlib', 'lru_cache').

        A name is a word the embedding model's vocabulary spells in more than one piece, with a
        letter in it: common words and plain numbers are one piece or are left alone.
        """
        return [
            term
            for term in dict.fromkeys(keywords(query))
            if any(c.isalpha() for c in term) and len(self.embedder.word_pieces(term)) >= 2
        ]

    def keyword_hits(
        self,
        query: str,
        n: int,
        sources: Collection[str] | None = None,
        file_types: Collection[str] | None = None,
    ) -> list[tuple[str, float]]:
        """The ``n`` best BM25 (chunk id, score) pairs, from these sources and types only."""
        return self.store.keyword_search(
            query, n, sources, file_types, budget=self.settings.keyword_budget
        )


_SENTENCE_CACHE_SIZE = 4096  # chunks whose sentence vectors are kept between questions
_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+|\n\s*\n")


def keyword_shares(windows: list[str], weights: dict[str, float]) -> list[float]:
    """Each window's share of the question's keyword weight, plurals folded into singulars.

    A question about "a character vector" is answered by a table of "R atomic vectors".
    """
    folded: dict[str, float] = {}
    for term, weight in weights.items():
        folded[singular(term)] = max(weight, folded.get(singular(term), 0.0))
    total = sum(folded.values())
    if not total:
        return [0.0] * len(windows)
    return [
        sum(folded.get(term, 0.0) for term in {singular(t) for t in keywords(window)}) / total
        for window in windows
    ]


def _runs_on(chunk: Retrieved) -> bool:
    """Whether one of the chunk's two best sentence pairs is among its last three.

    The second best counts too: a table's introduction often ranks just below the sentence
    before it, and the table itself is in the next chunk.
    """
    return any(window >= len(chunk.window_scores) - 3 for window in chunk.best_windows[:2])


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (split after . ! ? : and at blank lines)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if len(s.strip()) > 3]


def sentence_windows(text: str) -> list[str]:
    """Each sentence with the one after it: the units a one-sentence answer is matched on.

    Window ``i`` holds sentences ``i`` and ``i + 1``; a text without sentences is one window.
    """
    found = sentences(text)
    return [" ".join(found[i : i + 2]) for i in range(len(found))] or [text]


def _content_key(chunk: Retrieved) -> str:
    return str(chunk.metadata.get("content_hash") or chunk.id)


def _continued(chunk: Retrieved, after: StoredChunk) -> Retrieved:
    """``chunk`` with the text of the chunk after it, less what the two share (overlap)."""
    end, start = int(chunk.metadata["end_char"]), int(after.metadata["start_char"])
    tail = after.text[end - start :] if start < end else "\n" + after.text
    metadata = {
        **chunk.metadata,
        "end_char": after.metadata["end_char"],
        "content_hash": f"{_content_key(chunk)}+{after.metadata.get('content_hash', after.id)}",
        "tokens": int(chunk.metadata.get("tokens", 0)) + int(after.metadata.get("tokens", 0)),
    }
    return _with(chunk, text=chunk.text + tail, metadata=metadata)


def _with(chunk: Retrieved, **changes: Any) -> Retrieved:
    return Retrieved(**{**chunk.__dict__, **changes})


def _content_first(chunks: list[Retrieved]) -> list[Retrieved]:
    """Content before navigation (an index, a contents page), each in its order."""
    return sorted(chunks, key=lambda chunk: bool(chunk.metadata.get("navigation")))


def _without_near_duplicates(ranked: list[Retrieved], threshold: float) -> list[Retrieved]:
    """Drop each chunk nearly identical (cosine >= threshold) to a better-ranked one.

    The better one keeps the dropped one's source in ``also_in``: the passage is in both files.
    """
    kept: list[Retrieved] = []
    for chunk in ranked:
        twin = next(
            (
                i
                for i, o in enumerate(kept)
                if float(np.dot(chunk.embedding, o.embedding)) >= threshold
            ),
            None,
        )
        if twin is None:
            kept.append(chunk)
            continue
        source = str(chunk.metadata["source"])
        if source != kept[twin].metadata["source"] and source not in kept[twin].also_in:
            kept[twin] = _with(kept[twin], also_in=(*kept[twin].also_in, source))
    return kept


def _mmr(
    ranked: list[Retrieved], question: NDArray[np.float32], k: int, relevance_weight: float
) -> list[Retrieved]:
    """Pick ``k`` chunks, each maximizing relevance minus similarity to those already picked."""
    chosen: list[Retrieved] = []
    pool = list(ranked)
    while pool and len(chosen) < k:

        def gain(chunk: Retrieved) -> float:
            redundancy = max(
                (float(np.dot(chunk.embedding, c.embedding)) for c in chosen), default=0
            )
            return (
                relevance_weight * float(np.dot(chunk.embedding, question))
                - (1 - relevance_weight) * redundancy
            )

        best = max(pool, key=gain)
        chosen.append(best)
        pool.remove(best)
    return chosen
