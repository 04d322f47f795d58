"""Chat app figures, measured in a real headless Chromium against a baseline run in this process.

1. time from a question submitted in the browser to the first answer token shown, divided by
   the time to first token of ``rag ask``'s code path (an Answerer, as ``rag ask`` builds it)
   for the same question and store; both warmed up by another question first, so neither
   counts loading the models (target <= 1.2);
2. resident memory of the app process after answering, with the default models (target
   under 1.5 GiB).

Usage: python bench/bench_ui.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from rag.answering import Answerer
from rag.embeddings import Embedder
from rag.ingestion import Ingestor
from rag.llm import make_llm
from rag.retrieval import Retriever
from rag.settings import load_settings
from rag.store import ChunkStore

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
WARM_UP = "What should I check before a ride?"
QUESTIONS = [
    "How long does a full charge of the battery take?",
    "How many years is the frame covered by the warranty?",
    "What is the maximum rider weight?",
]
FIRST_TOKEN_SHOWN = """(n) => {
    const messages = document.querySelectorAll('[data-testid=stChatMessage]');
    if (messages.length < n) return false;
    const text = messages[n - 1].querySelector('[data-testid=stMarkdownContainer]');
    return text !== null && text.innerText.trim().length > 0;
}"""


def resident_mib(pid: int) -> float:
    """VmRSS of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(pid)


def browser_first_tokens(url: str, questions: list[str]) -> list[float]:
    """Seconds from pressing Enter to the first answer text shown, per question."""
    from playwright.sync_api import sync_playwright

    seconds = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = browser.new_page()
        page.goto(url)
        page.get_by_test_id("stChatInputTextArea").wait_for(timeout=120_000)
        for number, question in enumerate([WARM_UP, *questions]):
            box = page.get_by_test_id("stChatInputTextArea")
            box.fill(question)
            started = time.perf_counter()
            box.press("Enter")
            page.wait_for_function(FIRST_TOKEN_SHOWN, arg=2 * number + 2, timeout=120_000)
            shown = time.perf_counter() - started
            answer = page.get_by_test_id("stChatMessage").nth(2 * number + 1)
            timing = answer.get_by_text("first token").inner_text(timeout=120_000)
            if number:
                seconds.append(shown)
                print(f"    in the app: {timing}")
        browser.close()
    return seconds


def cli_first_tokens(data_dir: Path, questions: list[str]) -> list[float]:
    """``rag ask``'s time to first token (its own timing) per question, in this process."""
    settings = load_settings(data_dir=data_dir)
    embedder = Embedder(settings.embedding)
    store = ChunkStore(settings, embedder.name)
    answerer = Answerer(
        settings.answer,
        settings.llm,
        Retriever(settings.retrieval, store, embedder),
        make_llm(settings.llm),
    )
    answerer.ask(WARM_UP)
    return [answerer.ask(question).timings["first_token_s"] for question in questions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ratios: list[float] = []
    memory = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as work:
        data_dir = Path(work) / "data"
        settings = load_settings(data_dir=data_dir)
        embedder = Embedder(settings.embedding)
        with ChunkStore(settings, embedder.name) as store:
            assert Ingestor(settings, store, embedder).sync([SAMPLE]).ok
        for round_number in range(args.rounds):
            port = 8600 + round_number
            env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "RAG_UI__PORT": str(port)}
            app = subprocess.Popen(
                [sys.executable, "-m", "rag.cli", "ui"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                url = f"http://127.0.0.1:{port}"
                for _ in range(300):
                    try:
                        if httpx.get(f"{url}/_stcore/health", timeout=2).text == "ok":
                            break
                    except httpx.HTTPError:
                        time.sleep(0.3)
                shown = browser_first_tokens(url, QUESTIONS)
                memory = max(memory, resident_mib(app.pid))  # `rag ui` became the app
            finally:
                app.terminate()
                app.wait(timeout=30)
            cli = cli_first_tokens(data_dir, QUESTIONS)
            for question, browser_s, cli_s in zip(QUESTIONS, shown, cli, strict=True):
                ratios.append(browser_s / cli_s)
                print(f"  {question[:50]:<50} browser {browser_s:.3f}s  rag ask {cli_s:.3f}s")
    print(
        f"first token shown in the browser / rag ask's first token: {statistics.median(ratios):.3f}"
        " (median; target <= 1.2)"
    )
    print(f"app process resident memory after answering: {memory:.0f} MiB (target < 1536 MiB)")


if __name__ == "__main__":
    main()
