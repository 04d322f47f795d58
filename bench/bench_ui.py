"""Chat app figures, measured in a real headless Chromium against baselines run in this script.

1. time from a question submitted in the browser to the first answer token shown, divided by
   the time to first token of ``rag ask`` for the same question and store: the command run as
   a user runs it, one process per question, timed by itself from the question on (its models
   are loaded before the clock starts). Target <= 1.2.
2. the same browser time divided by the first token of the app's own code path without the
   app: an Answerer in this process, warmed up as the app warms up, asked the same questions
   in the same order. This ratio is the cost of the page alone: the rerun, the websocket, the
   browser's rendering, and the CPU that the browser takes from the model meanwhile.
3. resident memory of the app process after answering, with the default models (target
   under 1.5 GiB).

Usage: python bench/bench_ui.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from rag.pipeline import Pipeline
from rag.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
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


def browser_first_tokens(url: str) -> list[float]:
    """Seconds from pressing Enter to the first answer text shown, per question."""
    from playwright.sync_api import sync_playwright

    seconds = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = browser.new_page()
        page.goto(url)
        page.get_by_test_id("stChatInputTextArea").wait_for(timeout=120_000)
        for number, question in enumerate(QUESTIONS):
            box = page.get_by_test_id("stChatInputTextArea")
            box.fill(question)
            started = time.perf_counter()
            box.press("Enter")
            page.wait_for_function(FIRST_TOKEN_SHOWN, arg=2 * number + 2, timeout=120_000)
            seconds.append(time.perf_counter() - started)
            answer = page.get_by_test_id("stChatMessage").nth(2 * number + 1)
            timing = answer.get_by_text("first token").inner_text(timeout=120_000)
            print(f"    in the app: {timing}")
        browser.close()
    return seconds


def rag_ask_first_tokens(env: dict[str, str]) -> list[float]:
    """``rag ask --json``'s own time to first token, one fresh process per question."""
    seconds = []
    for question in QUESTIONS:
        done = subprocess.run(
            [sys.executable, "-m", "rag.cli", "ask", "--json", question],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        seconds.append(json.loads(done.stdout)["timings"]["first_token_s"])
    return seconds


def pipeline_first_tokens(data_dir: Path) -> list[float]:
    """First token of the app's code path without the app: warmed up as the app is."""
    with Pipeline(load_settings(data_dir=data_dir)) as pipeline:
        answerer = pipeline.answerer
        answerer.warm_up()
        return [answerer.ask(question).timings["first_token_s"] for question in QUESTIONS]


def app_first_tokens(data_dir: Path, port: int) -> tuple[list[float], float]:
    """Browser first tokens from a fresh ``rag ui``, and its resident memory afterwards."""
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
        shown = browser_first_tokens(url)
        return shown, resident_mib(app.pid)  # `rag ui` became the app
    finally:
        app.terminate()
        app.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    over_ask: list[float] = []
    over_pipeline: list[float] = []
    added: list[float] = []
    memory = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as work:
        data_dir = Path(work) / "data"
        with Pipeline(load_settings(data_dir=data_dir)) as ingesting:
            assert ingesting.ingestor.sync([SAMPLE]).ok
        for round_number in range(args.rounds):
            shown, resident = app_first_tokens(data_dir, 8600 + round_number)
            memory = max(memory, resident)
            asked = rag_ask_first_tokens({**os.environ, "RAG_DATA_DIR": str(data_dir)})
            pipeline = pipeline_first_tokens(data_dir)
            for question, browser_s, ask_s, pipeline_s in zip(
                QUESTIONS, shown, asked, pipeline, strict=True
            ):
                over_ask.append(browser_s / ask_s)
                over_pipeline.append(browser_s / pipeline_s)
                added.append(browser_s - pipeline_s)
                print(
                    f"  {question[:40]:<40} browser {browser_s:.3f}s  rag ask {ask_s:.3f}s"
                    f"  pipeline {pipeline_s:.3f}s"
                )
    median = statistics.median
    print(
        f"first token shown in the browser / rag ask's first token: {median(over_ask):.3f}"
        " (median; target <= 1.2)"
    )
    print(
        f"first token shown in the browser / the warm pipeline's, no app: "
        f"{median(over_pipeline):.3f} (median; the page adds {median(added):.3f}s)"
    )
    print(f"app process resident memory after answering: {memory:.0f} MiB (target < 1536 MiB)")


if __name__ == "__main__":
    main()
