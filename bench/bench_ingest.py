"""Ingestion figures on the shared pydoc corpus, as ratios measured in one process.

1. full ingest / embedding the same chunks alone with the same model   (target <= 1.15)
2. re-ingest of the unchanged corpus / full ingest                      (target <= 0.03)
3. corpus characters per second against the naive LangChain pipeline    (target >= 1.3)

Usage: python bench/bench_ingest.py [--corpus DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rag.embeddings import Embedder
from rag.ingestion import Ingestor, make_chunker
from rag.loaders import load
from rag.settings import load_settings
from rag.store import ChunkStore

T = TypeVar("T")
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "eval" / "pydoc" / "corpus"


def timed(label: str, action: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - started
    print(f"  {label}: {seconds:.2f}s", flush=True)
    return seconds, result


def our_ingest(corpus: Path, work: Path) -> tuple[float, float, int]:
    """Seconds of a full ingest into a new store, of a re-ingest, and chunks embedded."""
    settings = load_settings(data_dir=work / "ours")

    def full() -> int:
        embedder = Embedder(settings.embedding)  # the model load counts
        ingestor = Ingestor(settings, ChunkStore(settings, embedder.name), embedder)
        return ingestor.sync([corpus]).chunks_embedded

    def again() -> int:
        embedder = Embedder(settings.embedding)
        ingestor = Ingestor(settings, ChunkStore(settings, embedder.name), embedder)
        return ingestor.sync([corpus]).chunks_embedded

    full_s, embedded = timed("our full ingest", full)
    again_s, re_embedded = timed("our re-ingest (unchanged)", again)
    assert re_embedded == 0, re_embedded
    return full_s, again_s, embedded


def embedding_only(corpus: Path) -> float:
    """Seconds to embed exactly the chunk texts our ingest embeds, with the model loaded."""
    settings = load_settings()
    embedder = Embedder(settings.embedding)
    chunker = make_chunker(settings, embedder)
    texts = sorted(
        {c.text for path in sorted(corpus.glob("*.txt")) for c in chunker.split(load(path))}
    )
    embedder.embed(texts[:8])  # load the model outside the timing
    seconds, _ = timed(f"embedding {len(texts)} chunks alone", lambda: embedder.embed(texts))
    return seconds


def langchain_naive(corpus: Path, work: Path) -> float:
    """The tutorial pipeline: 1000/200 character chunks, Chroma.from_documents."""
    from langchain_chroma import Chroma
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from rag.embeddings import bundled_model_path

    def run() -> int:
        documents = [
            Document(page_content=path.read_text(), metadata={"source": path.name})
            for path in sorted(corpus.glob("*.txt"))
        ]
        splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
        chunks = splitter.split_documents(documents)
        embeddings = HuggingFaceEmbeddings(model_name=str(bundled_model_path()))
        Chroma.from_documents(chunks, embeddings, persist_directory=str(work / "langchain"))
        return len(chunks)

    seconds, _ = timed("naive LangChain pipeline", run)
    return seconds


def warm_up() -> None:
    """Import what both pipelines use and run the model once: per-process costs, not ingest's."""
    import chromadb  # noqa: F401
    import langchain_chroma  # noqa: F401
    import langchain_huggingface  # noqa: F401

    Embedder(load_settings().embedding).embed(["warm up the process"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    characters = sum(len(p.read_text()) for p in args.corpus.glob("*.txt"))
    print(f"corpus: {args.corpus} ({characters} characters)")
    print(f"embedding precision: {Embedder(load_settings().embedding).precision}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        warm_up()
        embed_s = embedding_only(args.corpus)
        full_s, again_s, embedded = our_ingest(args.corpus, work)
        naive_s = langchain_naive(args.corpus, work)
    figures = {
        "full_ingest_over_embedding_only": full_s / embed_s,
        "reingest_over_full_ingest": again_s / full_s,
        "chars_per_s_vs_langchain": naive_s / full_s,
        "our_chars_per_s": characters / full_s,
        "langchain_chars_per_s": characters / naive_s,
        "chunks_embedded": embedded,
    }
    print()
    print(
        f"full ingest / embedding only:   {figures['full_ingest_over_embedding_only']:.3f}  "
        "(target <= 1.15)"
    )
    print(
        f"re-ingest / full ingest:        {figures['reingest_over_full_ingest']:.4f} "
        "(target <= 0.03)"
    )
    print(
        f"chars/s vs naive LangChain:     {figures['chars_per_s_vs_langchain']:.2f}x  "
        f"({figures['our_chars_per_s']:.0f} vs {figures['langchain_chars_per_s']:.0f}; "
        "target >= 1.3)"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
