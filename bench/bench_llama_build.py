"""Tokens/s of llama.cpp builds against a baseline build, same model, same machine, same run.

    python bench/bench_llama_build.py BASELINE.whl OTHER.whl [OTHER.whl ...] [--rounds 3]

Each wheel is unpacked to a scratch folder; every round runs each build in a fresh process
(alternating, so drift hits all alike) on the bundled Gemma 3 270M with rag doctor's fixed
workload: a 512-token prompt evaluated from an empty cache, then 64 greedy tokens. Printed:
each build's median prompt and generation tokens/s and its ratio to the first wheel's.
A build made with GGML_BACKEND_DL finds its CPU variants because the process runs in its
library folder (ggml searches the working directory).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MEASURE = """
import json, sys
from rag.doctor import time_llm
from rag.models.llama_cpp_llm import LlamaCppLLM
from rag.settings import LLMSettings
import llama_cpp
assert llama_cpp.__file__.startswith(sys.argv[1]), llama_cpp.__file__
llm = LlamaCppLLM(LLMSettings(n_ctx=2048, n_gpu_layers=0))
llm.load()
time_llm(llm, 64, 8)  # warm-up
runs = [time_llm(llm, 512, 64) for _ in range(3)]
info = bytes(llama_cpp.llama_print_system_info()).decode()
print(json.dumps({"prompt": max(r[0] for r in runs), "generation": max(r[1] for r in runs),
                  "info": info}))
"""


def measure(site: Path) -> dict[str, object]:
    lib = site / "llama_cpp" / "lib"
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(site)],
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
        cwd=lib,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheels", nargs="+", type=Path, help="the first is the baseline")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-llama-") as scratch:
        sites = []
        for index, wheel in enumerate(args.wheels):
            site = Path(scratch) / str(index)
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(site)
            for library in (site / "llama_cpp" / "lib").iterdir():
                library.chmod(0o755)
            sites.append(site)
        figures: list[dict[str, list[float]]] = [{"prompt": [], "generation": []} for _ in sites]
        infos: list[str] = [""] * len(sites)
        for _ in range(args.rounds):
            for index, site in enumerate(sites):
                result = measure(site)
                figures[index]["prompt"].append(float(result["prompt"]))  # type: ignore[arg-type]
                figures[index]["generation"].append(float(result["generation"]))  # type: ignore[arg-type]
                infos[index] = str(result["info"])
    base = {name: statistics.median(values) for name, values in figures[0].items()}
    print(f"{'build':<48} {'prompt tok/s':>13} {'ratio':>6} {'gen tok/s':>10} {'ratio':>6}")
    for wheel, figure, info in zip(args.wheels, figures, infos, strict=True):
        prompt = statistics.median(figure["prompt"])
        generation = statistics.median(figure["generation"])
        name = f"{wheel.parent.name}/{wheel.name[:20]}"
        print(
            f"{name:<48} {prompt:>13.0f} {prompt / base['prompt']:>6.3f}"
            f" {generation:>10.1f} {generation / base['generation']:>6.3f}"
        )
        print(f"    {info.strip()[:300]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
