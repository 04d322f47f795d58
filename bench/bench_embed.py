"""Embedding throughput: our Embedder at its default batch / raw sentence-transformers' best.

Same chunks (the shared pydoc corpus as our ingest splits it), same model, same device, one
process, alternating rounds. Raw sentence-transformers is tried at several batch sizes (in
fp16 on a GPU, as our Embedder computes there) and its best counts. Target on a GPU: >= 0.8;
on a CPU the default batch stays the one measured best there (16).

Usage: python bench/bench_embed.py [--corpus DIR] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from rag.documents.loaders import load
from rag.ingest.ingestion import make_chunker
from rag.models.embeddings import Embedder
from rag.settings import load_settings

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "eval" / "pydoc" / "corpus"
RAW_BATCHES = (16, 64, 256, 512)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings()
    embedder = Embedder(settings.embedding)
    chunker = make_chunker(settings, embedder)
    paths = sorted(args.corpus.glob("*.txt"))
    texts = sorted({chunk.text for path in paths for chunk in chunker.split(load(path))})
    model = embedder.model  # the very model object: only the calling code differs
    gpu = embedder.device != "cpu"
    print(f"{len(texts)} chunks; device {embedder.device}; precision {embedder.precision}")
    print(f"our default batch: {embedder.batch_size}")

    def ours() -> None:
        embedder.embed(texts)

    def raw(batch: int) -> None:
        import torch

        with torch.autocast(embedder.device.split(":")[0], dtype=torch.float16, enabled=gpu):
            model.encode(texts, batch_size=batch, normalize_embeddings=True)

    runs: dict[str, list[float]] = {"ours": [], **{f"raw {b}": [] for b in RAW_BATCHES}}
    for _ in range(args.rounds + 1):  # the first round warms every batch shape, untimed
        for name in runs:
            started = time.perf_counter()
            ours() if name == "ours" else raw(int(name.split()[1]))
            runs[name].append(len(texts) / (time.perf_counter() - started))
    rates = {name: statistics.median(values[1:]) for name, values in runs.items()}
    best = max((name for name in rates if name != "ours"), key=rates.__getitem__)
    for name, rate in rates.items():
        print(f"  {name:<9} {rate:8.0f} chunks/s")
    print(f"ours / raw best ({best}): {rates['ours'] / rates[best]:.3f}  (GPU target >= 0.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
