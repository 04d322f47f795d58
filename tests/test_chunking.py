import re
from pathlib import Path

import pytest

from rag.documents.chunking import Chunker, is_navigation
from rag.documents.document import LoadedDocument, Section
from rag.documents.loaders import load
from rag.models.embeddings import TOKENIZE_WINDOW, Embedder
from rag.settings import EmbeddingSettings
from tests.conftest import SHARED_EVAL
from tests.docgen import paragraphs, write_mixed_folder


def word_spans(text: str) -> tuple[list[int], list[int]]:
    """A fake tokenizer for exact assertions: one token per word."""
    spans = [match.span() for match in re.finditer(r"\S+", text)]
    return [start for start, _ in spans], [end for _, end in spans]


def document(text: str) -> LoadedDocument:
    return LoadedDocument(text, [Section(0, len(text))])


@pytest.fixture(scope="module")
def tokenizer_only() -> Embedder:
    """The real model's tokenizer (the model itself is not loaded)."""
    return Embedder(EmbeddingSettings())


def test_paragraphs_that_fit_stay_whole() -> None:
    text = "a b c\n\nd e f\n\ng h i"
    chunks = Chunker(word_spans, max_tokens=6).split(document(text))
    assert [c.text for c in chunks] == ["a b c\n\nd e f", "g h i"]


def test_long_paragraph_splits_at_sentences_with_overlap() -> None:
    text = "One two three. Four five six. Seven eight nine. Ten eleven twelve."
    chunks = Chunker(word_spans, max_tokens=6, overlap_tokens=3).split(document(text))
    assert [c.text for c in chunks] == [
        "One two three. Four five six.",
        "Four five six. Seven eight nine.",
        "Seven eight nine. Ten eleven twelve.",
    ]


def test_word_without_spaces_is_cut_at_tokens(tokenizer_only: Embedder) -> None:
    text = "x" * 5000
    chunker = Chunker(tokenizer_only.token_spans, max_tokens=50)
    chunks = chunker.split(document(text))
    assert "".join(c.text for c in chunks) == text
    assert max(tokenizer_only.count_tokens([c.text for c in chunks])) <= 50


def test_chunks_never_cross_sections() -> None:
    text = "Head A\n\nbody a\n\nHead B\n\nbody b"
    doc = LoadedDocument(
        text, [Section(0, 15, ("Head A",), 1), Section(15, len(text), ("Head B",), 2)]
    )
    chunks = Chunker(word_spans, max_tokens=100).split(doc)
    assert [(c.text, c.headings, c.page) for c in chunks] == [
        ("Head A\n\nbody a", ("Head A",), 1),
        ("Head B\n\nbody b", ("Head B",), 2),
    ]


def test_title_alone_is_merged_into_the_next_section() -> None:
    text = "Book\n====\n\nChapter\n-------\n\nwords here"
    doc = LoadedDocument(
        text, [Section(0, 11, ("Book",)), Section(11, len(text), ("Book", "Chapter"))]
    )
    chunks = Chunker(word_spans, max_tokens=100).split(doc)
    assert [(c.text, c.headings) for c in chunks] == [(text, ("Book", "Chapter"))]


def test_overlap_must_be_below_size() -> None:
    with pytest.raises(ValueError, match="overlap_tokens"):
        Chunker(word_spans, max_tokens=10, overlap_tokens=10)


def corpus_files(tmp_path: Path) -> list[Path]:
    files = sorted(SHARED_EVAL.joinpath("corpus").glob("*.txt"))[:25]
    write_mixed_folder(tmp_path / "mixed")
    long_text = tmp_path / "long.md"
    long_text.write_text("# Long\n\n" + " ".join(paragraphs("ocean", 40, 12)))
    return [*files, *sorted((tmp_path / "mixed").rglob("*.*")), long_text]


def test_real_chunks_fit_the_embedder_and_are_exact_slices(
    tokenizer_only: Embedder, tmp_path: Path
) -> None:
    chunker = Chunker(tokenizer_only.token_spans, tokenizer_only.max_tokens, overlap_tokens=32)
    total = 0
    for path in corpus_files(tmp_path):
        doc = load(path)
        chunks = chunker.split(doc)
        assert chunks, path
        with_specials = [
            len(e.ids) for e in tokenizer_only.tokenizer.encode_batch([c.text for c in chunks])
        ]
        # What is stored is what is embedded: the model reads every word piece of every chunk.
        assert max(with_specials) <= tokenizer_only.max_seq_length, path
        counts = tokenizer_only.count_tokens([c.text for c in chunks])
        for chunk, counted in zip(chunks, counts, strict=True):
            assert chunk.text == doc.text[chunk.start : chunk.end]
            assert chunk.tokens == counted
        total += len(chunks)
    assert total > 50


def test_markdown_title_alone_is_merged(tokenizer_only: Embedder, tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_text("# Manual\n\n## Setup\n\nPlug it in.\n")
    chunks = Chunker(tokenizer_only.token_spans, 200).split(load(path))
    assert [(c.text, c.headings) for c in chunks] == [
        ("# Manual\n\n## Setup\n\nPlug it in.", ("Manual", "Setup"))
    ]


def test_long_text_is_tokenized_in_windows_like_whole(tokenizer_only: Embedder) -> None:
    text = " ".join(paragraphs("otter", 400)) + " supercalifragilistic" * 3
    assert len(text) > 2 * TOKENIZE_WINDOW
    starts, ends = tokenizer_only.token_spans(text)
    whole = tokenizer_only.tokenizer.encode(text, add_special_tokens=False).offsets
    assert list(zip(starts, ends, strict=True)) == whole


def test_an_index_a_contents_page_and_navigation_lines_are_told_from_content() -> None:
    contents = "Table of Contents\n" + "".join(
        f"{n} Chapter {n} . . . . . . . . . . . . . {n * 3}\n" for n in range(1, 7)
    )
    index = "Concept Index\nA\n" + "".join(
        f"{word} program . . . . . . . . . . {n}\n" for n, word in enumerate("abcdef", 2)
    )
    back_of_book = "Index\n" + "".join(f"{w}, {n}, {n + 4}\n" for n, w in enumerate("ghijkl"))
    assert is_navigation(contents)
    assert is_navigation(index)
    assert is_navigation(back_of_book)
    assert is_navigation("Next: Index, Previous: Memory Usage, Up: libffi [Index]")
    prose = "libffi is missing a few features. We welcome patches to add support for these."
    assert not is_navigation(prose)
    assert not is_navigation("Next: Index, Previous: Memory Usage, Up: libffi\n" + prose * 2)
    table = "Part: brake pad\nprice_eur: 12\nPart: chain\nprice_eur: 30\n" * 2
    assert not is_navigation(table)  # a CSV's "column: value" rows end in numbers too
    assert not is_navigation("It was released in 1999.\nThe next one came in 2004.")
