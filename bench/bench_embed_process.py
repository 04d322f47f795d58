"""The embedding model beside the store's writes: in the writing process, or in its own.

On a GPU an ingest writes one group (Chroma's ``add``, then the keyword index) in a thread
while the model embeds the next. Chroma's ``add`` holds Python's lock for the whole of its
run, so a model in the same process waits for each add to end before its next step; in a
process of its own (``ingest.embedding_process``, ``rag.models.embedding_process``) it does not.

Embeds the pydoc corpus's chunk texts (copies up to ``--chunks``) with the bundled model, with
the model loaded and warmed, four ways, alternated over ``--rounds``:
1. here, alone (the baseline);
2. here, beside a thread that writes chunks to a store without pause, as an ingest's
   background writer does (real Chroma, real keyword index; the store is assembled by
   ``rag.pipeline``; random vectors, the corpus's texts);
3. in its own process, alone (what sending texts and vectors costs);
4. in its own process, beside the same writing thread.
Prints each one's chunks/s as a ratio against 1 (medians over the rounds), and the writes'
chunks/s beside 2 and 4.

On a CPU the model and the writes also share the cores. ``--threads 1`` (the default) gives
the model one core (``OMP_NUM_THREADS``, both processes) and leaves the other to the writes on
a 2-core machine, so that what 2 and 4 share is what a GPU machine's would: Python's lock.

Usage: python bench/bench_embed_process.py [--chunks 2000] [--rounds 3] [--threads 1]
           [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "eval" / "pydoc" / "corpus"


def numbered_copies(count: int) -> tuple[Any, list[str], list[int]]:
    """A loaded-on-use embedder, ``count`` chunk texts (the corpus's, copies numbered), and
    their token counts: the chunks ``bench_ingest`` embeds."""
    from bench_ingest import chunk_texts

    embedder, base = chunk_texts(CORPUS)
    texts = [f"{base[n % len(base)]} ({n // len(base)})" for n in range(count)]
    return embedder, texts, embedder.count_tokens(texts)


class Writer:
    """A thread that writes chunks of 512 to the store without pause, until stopped."""

    def __init__(self, store: Any, texts: list[str]) -> None:
        self.store, self.texts = store, texts
        self.written = 0
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-writer")

    def __enter__(self) -> Writer:
        self._thread.start()
        time.sleep(0.5)  # writing already when the embedding starts
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import numpy as np

        from rag.storage.records import Metadata, StoredChunk

        rng = np.random.default_rng(0)
        started = time.perf_counter()
        while not self._stop.is_set():
            vectors = rng.standard_normal((512, 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            batch = []
            for n in range(512):
                number = self.written + n
                metadata: Metadata = {
                    "root": "/bench",
                    "source": f"file{number // 8}.txt",
                    "file_type": "txt",
                    "file_hash": f"hash{number // 8}",
                    "pipeline": "bench",
                    "chunk_index": number % 8,
                    "chunk_count": 8,
                    "content_hash": f"content{number}",
                }
                text = self.texts[number % len(self.texts)]
                batch.append(StoredChunk(f"chunk{number}", text, metadata, vectors[n]))
            self.store.write(new_chunks=batch)
            self.written += len(batch)
        self.seconds = time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="the model's (0: torch's own)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch loads, and inherited

    from rag.models.embedding_process import EmbeddingProcess
    from rag.pipeline import Pipeline
    from rag.settings import load_settings

    with tempfile.TemporaryDirectory() as work:
        settings = load_settings(data_dir=Path(work))
        embedder, texts, counts = numbered_copies(args.chunks)
        own = EmbeddingProcess(settings.embedding)
        with Pipeline(settings, embedder=embedder) as pipeline:
            embedder.embed(texts[:256], token_counts=counts[:256])  # loaded and warm
            while not own.ready():
                time.sleep(0.1)
            own.embed(texts[:256], None, counts[:256])

            def here() -> Any:
                return embedder.embed(texts, token_counts=counts)

            def in_own() -> Any:
                return own.embed(texts, None, counts)

            rates: dict[str, list[float]] = {}
            writes: dict[str, list[float]] = {}
            for round_number in range(args.rounds):
                for name, embed, beside in (
                    ("here, alone", here, False),
                    ("here, beside the writes", here, True),
                    ("own process, alone", in_own, False),
                    ("own process, beside the writes", in_own, True),
                ):
                    writer = Writer(pipeline.store, texts)
                    with writer if beside else contextlib.nullcontext():
                        begun = time.perf_counter()
                        embed()
                        seconds = time.perf_counter() - begun
                    if beside:
                        writes.setdefault(name, []).append(writer.written / writer.seconds)
                    rates.setdefault(name, []).append(len(texts) / seconds)
                    print(
                        f"round {round_number + 1}: {name}: {len(texts) / seconds:,.0f} chunks/s",
                        flush=True,
                    )
        own.close()
    baseline = statistics.median(rates["here, alone"])
    figures = {
        "chunks": len(texts),
        "model_threads": args.threads or "torch's own",
        "embedded_chunks_per_s": {name: statistics.median(r) for name, r in rates.items()},
        "against_here_alone": {name: statistics.median(r) / baseline for name, r in rates.items()},
        "written_chunks_per_s_beside": {name: statistics.median(w) for name, w in writes.items()},
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
