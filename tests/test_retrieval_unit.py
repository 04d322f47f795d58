"""Ranking logic with exact inputs: BM25, near-duplicates, MMR (the real store is tested too)."""

from pathlib import Path

import numpy as np

from rag.answering.citations import support
from rag.retrieval.retriever import (
    Retrieved,
    _mmr,
    _runs_on,
    _without_near_duplicates,
    keyword_shares,
    sentence_windows,
)
from rag.storage.keywords import KeywordIndex, keywords, singular
from rag.storage.store import _where


def test_keywords_keep_identifiers_and_drop_stop_words() -> None:
    assert keywords("What does dict.popitem() return in the __main__ module?") == [
        "dict",
        "popitem",
        "return",
        "__main__",
        "module",
    ]


def indexed(texts: dict[str, str], **metadata: str) -> KeywordIndex:
    """An in-memory index holding these chunk texts, by id."""
    index = KeywordIndex()
    index.update((i, text, metadata) for i, text in texts.items())
    return index


def test_bm25_prefers_rare_terms_and_follows_removals() -> None:
    index = indexed(
        {
            "a": "popitem removes a pair from the dictionary",
            "b": "the dictionary maps keys to values",
            "c": "lists hold values in order",
        }
    )
    ranked = index.search("dictionary popitem", 3)
    assert [chunk_id for chunk_id, _ in ranked] == ["a", "b"]
    assert ranked[0][1] > ranked[1][1] > 0
    index.update(removed=["a"])
    assert [chunk_id for chunk_id, _ in index.search("popitem", 3)] == []
    assert not index.vocabulary_has("popitem")
    index.update([("b", "now about popitem", {})])  # re-indexing replaces
    assert [chunk_id for chunk_id, _ in index.search("popitem dictionary", 3)] == ["b"]
    assert not index.vocabulary_has("dictionary")
    assert (len(index), "a" in index, "b" in index) == (2, False, True)


def test_bm25_filters_by_source_and_file_type() -> None:
    index = KeywordIndex()
    index.update([("a", "walrus operator", {"source": "a.md", "file_type": "md"})])
    index.update([("b", "walrus facts", {"source": "b.pdf", "file_type": "pdf"})])
    assert [i for i, _ in index.search("walrus", 5, sources={"b.pdf"})] == ["b"]
    assert [i for i, _ in index.search("walrus", 5, file_types={"md"})] == ["a"]
    assert index.search("walrus", 5, sources={"a.md"}, file_types={"pdf"}) == []


def test_a_search_past_its_budget_leaves_the_commonest_words_out() -> None:
    texts = {f"c{n}": f"common filler {n}" for n in range(50)}
    index = indexed({**texts, "rare": "a rare word", "both": "rare and common"})
    found = index.search("rare common", 100)
    assert {i for i, _ in found} == {*texts, "rare", "both"}
    # 52 postings of "common" do not fit in 10: only the rare word is searched.
    assert {i for i, _ in index.search("rare common", 100, budget=10)} == {"rare", "both"}
    assert index.weights("rare common")["rare"] > index.weights("rare common")["common"]


def test_the_index_keeps_words_as_keywords_makes_them() -> None:
    index = indexed({"py": "the __main__ module", "ja": "東京タワーの高さ", "de": "Größe"})
    assert [i for i, _ in index.search("__main__", 5)] == ["py"]
    assert index.search("main", 5) == []  # '_' is inside the word, as in keywords()
    assert [i for i, _ in index.search("タワー", 5)] == ["ja"]
    assert [i for i, _ in index.search("GROSSE", 5)] == ["de"]


def test_a_sweep_forgets_every_chunk_not_kept() -> None:
    index = indexed({"a": "alpha", "b": "beta", "c": "gamma"})
    with index.sweeping() as keep:
        keep(["a"])
        keep(["c", "z"])  # an id the index lacks changes nothing
    assert (len(index), "b" in index, index.vocabulary_has("beta")) == (2, False, False)


def test_two_processes_write_one_index_file_at_once(tmp_path: Path) -> None:
    import threading

    # Two connections, as two processes have: SQLite locks the file between them.
    first, second = (KeywordIndex(tmp_path / "k.sqlite3") for _ in range(2))
    errors: list[BaseException] = []

    def write(index: KeywordIndex, name: str) -> None:
        try:
            for n in range(150):
                index.update([(f"{name}{n}", f"words of {name} {n}", {})])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=pair) for pair in ((first, "a"), (second, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(first) == len(second) == 300


def test_the_journal_names_chunks_until_their_write_is_confirmed(tmp_path: Path) -> None:
    index = KeywordIndex(tmp_path / "k.sqlite3")
    index.intend(["a", "b"])
    index.close()
    reopened = KeywordIndex(tmp_path / "k.sqlite3")  # as a process after a killed write
    assert sorted(reopened.pending()) == ["a", "b"]
    reopened.update([("a", "alpha", {})], removed=["b"])
    assert reopened.pending() == []
    assert len(reopened) == 1


def chunk(
    chunk_id: str, vector: list[float], similarity: float = 0.5, source: str = "x.md"
) -> Retrieved:
    embedding = np.asarray(vector, dtype=np.float32)
    embedding /= np.linalg.norm(embedding)
    return Retrieved(chunk_id, chunk_id, {"source": source}, similarity, 0.0, 0.0, embedding)


def test_near_duplicates_of_a_better_chunk_are_dropped() -> None:
    ranked = [chunk("a", [1, 0]), chunk("a-copy", [1, 0.01]), chunk("b", [0, 1])]
    kept = _without_near_duplicates(ranked, 0.97)
    assert [c.id for c in kept] == ["a", "b"]
    assert kept[0].also_in == ()  # the copy was in the same file


def test_a_passage_found_in_two_files_names_both() -> None:
    ranked = [
        chunk("a", [1, 0], source="naming.txt"),
        chunk("b", [0, 1], source="other.txt"),
        chunk("a-copy", [1, 0.01], source="execmodel.txt"),
        chunk("a-copy-2", [1, 0.02], source="execmodel.txt"),
    ]
    kept = _without_near_duplicates(ranked, 0.97)
    assert [(c.id, c.also_in) for c in kept] == [("a", ("execmodel.txt",)), ("b", ())]


def test_sentence_windows_pair_each_sentence_with_the_next() -> None:
    text = "First one. Second one!\n\nThird: after a colon\nstill third? Yes."
    assert sentence_windows(text) == [
        "First one. Second one!",
        "Second one! Third:",
        "Third: after a colon\nstill third?",
        "after a colon\nstill third? Yes.",
        "Yes.",
    ]
    assert sentence_windows("no end") == ["no end"]


def test_mmr_trades_rank_for_variety() -> None:
    question = np.asarray([1.0, 0.0], dtype=np.float32)
    ranked = [chunk("a", [1, 0.1]), chunk("a2", [1, 0.12]), chunk("b", [0.7, -0.7])]
    assert [c.id for c in _mmr(ranked, question, 2, relevance_weight=0.5)] == ["a", "b"]
    assert [c.id for c in _mmr(ranked, question, 2, relevance_weight=1.0)] == ["a", "a2"]


def test_filters_become_chroma_where() -> None:
    assert _where(None, None) is None
    assert _where(["b.md", "a.md"], None) == {"source": {"$in": ["a.md", "b.md"]}}
    assert _where(["a.md"], [".PDF"]) == {
        "$and": [{"source": {"$in": ["a.md"]}}, {"file_type": {"$in": ["pdf"]}}]
    }


def test_keywords_are_unicode_words() -> None:
    assert keywords("Größe naïve café") == ["grosse", "naive", "cafe"]
    assert keywords("ΣΊΣΥΦΟΣ Ελλάδα") == ["σισυφοσ", "ελλαδα"]
    assert keywords("東京タワーの高さ") == ["東京", "京タ", "タワ", "ワー", "ーの", "の高", "高さ"]
    assert keywords("서울 tower") == ["서울", "tower"]


def test_an_answer_in_another_script_is_checked_against_its_evidence() -> None:
    assert support("東京タワーの高さは333メートルです", "東京タワーの高さは333メートルです") == 1.0
    assert support("富士山は日本一高い山です", "東京タワーの高さは333メートルです") < 0.3
    assert support("Die Größe beträgt drei Meter", "Die Grösse beträgt drei Meter.") == 1.0


def test_keyword_search_finds_words_with_accents_either_way() -> None:
    index = indexed(
        {
            "de": "Die Größe des Kessels beträgt drei Meter.",
            "fr": "Le café est servi à huit heures.",
            "en": "The boiler is three metres tall.",
        }
    )
    assert index.search("Grösse Kessel", 1)[0][0] == "de"
    assert index.search("cafe", 1)[0][0] == "fr"


def test_plurals_fold_into_singulars_for_ranking_sentences() -> None:
    assert [singular(w) for w in ("vectors", "classes", "entries", "class", "bus", "is")] == [
        "vector",
        "class",
        "entry",
        "class",
        "bus",
        "is",
    ]
    weights = {"character": 2.0, "vector": 1.0}
    windows = ["The modes of R atomic vectors: character", "A vector.", "Nothing here."]
    assert keyword_shares(windows, weights) == [1.0, 1 / 3, 0.0]
    assert keyword_shares(windows, {}) == [0.0, 0.0, 0.0]


def test_a_chunk_reads_on_when_one_of_its_two_best_pairs_ends_it() -> None:
    def chunk(best_windows: tuple[int, ...]) -> Retrieved:
        scores = tuple(0.1 for _ in range(8))
        vector = np.zeros(3, dtype=np.float32)
        return Retrieved("c", "", {}, 0.5, 0.0, 0.0, vector, (), best_windows, scores)

    assert _runs_on(chunk((5, 0)))  # the best is among the last three of eight
    assert _runs_on(chunk((4, 6)))  # so is the second best: a table's introduction
    assert not _runs_on(chunk((4, 1, 7)))
