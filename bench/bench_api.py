"""``rag serve`` against the same pipeline in process, with the bundled models.

1. First token through the API (the official openai client, streaming, over HTTP to a real
   ``rag serve``) divided by the first token of the same question asked in this process
   (``answerer.stream``), each timed from the moment of asking (retrieval included), both
   warmed up, alternating question by question (which goes first alternates by round);
   median of the per-question ratios (target <= 1.1).
2. 20 concurrent questions from 20 clients (threads, each with its own client, no retries):
   every one answered (200) or told to come back (429), none lost or hung; p50 and p95 seconds
   to the whole answer; the server's peak resident memory during the run (from /proc).

Usage: python bench/bench_api.py [--rounds N] [--clients N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import openai

from rag.pipeline import Pipeline
from rag.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.servers import free_port, start_rag_serve  # noqa: E402

SAMPLE = ROOT / "data" / "sample"
QUESTIONS = [
    "How long does a full charge of the battery take?",
    "How many charge cycles does the warranty cover?",
    "What tyre pressure should the tyres have?",
    "Where is the frame number engraved?",
    "Which charger should be used?",
]


def first_piece_seconds(ask: Callable[[], Iterable[str | None]]) -> float:
    """Seconds from asking (retrieval and the request included) to the first non-empty piece."""
    started = time.perf_counter()
    first = None
    for piece in ask():
        if first is None and piece:
            first = time.perf_counter() - started
    assert first is not None
    return first


def api_pieces(client: openai.OpenAI, question: str) -> Iterator[str | None]:
    events = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": question}], stream=True
    )
    return (e.choices[0].delta.content for e in events if e.choices and e.choices[0].delta)


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-api-") as work:
        data = Path(work) / "data"
        settings = load_settings(data_dir=data)
        with Pipeline(settings) as pipeline:
            assert pipeline.ingestor.sync([SAMPLE]).ok
            answerer = pipeline.answerer
            answerer.warm_up()
            port = free_port()
            server = start_rag_serve(port, Path(work) / "serve.log", {"RAG_DATA_DIR": str(data)})
            try:
                client = openai.OpenAI(
                    base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0
                )
                first_piece_seconds(lambda: api_pieces(client, QUESTIONS[0]))  # warmed up
                ratios, api_s, local_s = [], [], []
                for round_number in range(args.rounds):
                    for question in QUESTIONS:
                        asks: list[Callable[[], Iterable[str | None]]] = [
                            partial(answerer.stream, question),
                            partial(api_pieces, client, question),
                        ]
                        if round_number % 2:  # which goes first alternates, round by round
                            remote, local = map(first_piece_seconds, asks[::-1])
                        else:
                            local, remote = map(first_piece_seconds, asks)
                        local_s.append(local)
                        api_s.append(remote)
                        ratios.append(remote / local)
                print(
                    f"first token: API {statistics.median(api_s):.3f}s, in process "
                    f"{statistics.median(local_s):.3f}s; API / in process (median of "
                    f"{len(ratios)} pairs): {statistics.median(ratios):.3f} (target <= 1.1)"
                )
                concurrent(port, server.pid, args.clients)
            finally:
                server.terminate()
                server.wait(timeout=30)


def concurrent(port: int, pid: int, clients: int) -> None:
    """``clients`` questions at once, each from its own client."""
    outcomes: list[tuple[int, float]] = []
    peak = [resident_mb(pid)]
    done = threading.Event()

    def watch_memory() -> None:
        while not done.wait(0.1):
            peak.append(resident_mb(pid))

    def ask(n: int) -> None:
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=600
        )
        started = time.perf_counter()
        try:
            client.chat.completions.create(
                model="default",
                messages=[{"role": "user", "content": QUESTIONS[n % len(QUESTIONS)]}],
            )
            outcomes.append((200, time.perf_counter() - started))
        except openai.RateLimitError:
            outcomes.append((429, time.perf_counter() - started))
        except openai.OpenAIError as error:
            outcomes.append((getattr(error, "status_code", -1), time.perf_counter() - started))

    watcher = threading.Thread(target=watch_memory)
    watcher.start()
    askers = [threading.Thread(target=ask, args=(n,)) for n in range(clients)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join(timeout=900)
    done.set()
    watcher.join()
    answered = [seconds for code, seconds in outcomes if code == 200]
    refused = sum(code == 429 for code, _ in outcomes)
    other = len(outcomes) - len(answered) - refused
    hung = clients - len(outcomes)
    print(
        f"{clients} concurrent clients: {len(answered)} answered, {refused} told 429, "
        f"{other} other errors, {hung} lost or hung"
    )
    if answered:
        p50, p95 = np.percentile(answered, [50, 95])
        print(f"  time to answer p50 {p50:.2f}s, p95 {p95:.2f}s")
    print(f"  server resident memory: peak {max(peak):.0f} MB (at start {peak[0]:.0f} MB)")


if __name__ == "__main__":
    main()
