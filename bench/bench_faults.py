"""The fault and hostile-input suite: real processes, real files, real servers, with figures.

Every case runs the real CLI (or the real pipeline) and checks what a user relies on: no
traceback and no crash, every failure named with its file and reason, and the store afterwards
equal to what a clean run over the surviving inputs writes (same ids). Printed at the end:
cases tried, crashes (target 0), documents lost (target 0), and the longest time and highest
memory spent on one hostile file, also as ratios against the same ingest without it.

Hostile inputs: zip-bomb DOCX, PPTX, XLSX and EPUB files (1 GB inside), an XLSX of 6 million
cells, a mail of 100,000 parts, a web page of 60 MB and one that drips a byte every 10 ms
(served on 127.0.0.1), a PDF of 10,000 pages, a 50 MB text file on one
line, HTML nested 100,000 deep, a CSV with a million columns, file names holding a newline, a
right-to-left override or ``..\\``, a symlink leading out of the folder, a document full of
prompt structure and special tokens.
Faults: SIGKILL at 20 random moments of an ingest; the data folder's disk full mid-ingest (a
small tmpfs; needs root); the Chroma server killed mid-ingest and mid-query, then restarted;
the LLM server refusing, hanging and dying mid-stream.

Usage: python bench/bench_faults.py [--quick] [--part all|hostile|faults] [--json FILE]
(--quick: small sizes, 5 kills)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.errors import RagError  # noqa: E402
from rag.models.llm import LLMError, Prompt, make_llm  # noqa: E402
from rag.pipeline import Pipeline  # noqa: E402
from rag.settings import load_settings  # noqa: E402
from rag.storage.connection import StoreError  # noqa: E402
from tests import hostile  # noqa: E402
from tests.docgen import paragraphs  # noqa: E402
from tests.hostile import Measured as Run  # noqa: E402
from tests.hostile import run_measured  # noqa: E402
from tests.servers import (  # noqa: E402
    free_port,
    start_chroma,
    start_llama_server,
    wait_until_serving,
)
from tests.website import Page, Site  # noqa: E402

NORMAL = "# Kestrel\n\nThe kestrel hovers over the field at dawn.\n"


@dataclass
class Figures:
    cases: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str, **extra: Any) -> None:
        self.cases.append({"case": name, "ok": ok, "detail": detail, **extra})
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)


def run(args: list[str], env: dict[str, str] | None = None, kill_after: float | None = None) -> Run:
    """Run ``python ARGS``, its peak memory measured; SIGKILL it after ``kill_after`` seconds."""
    command, environment = [sys.executable, *args], {**os.environ, **(env or {})}
    if kill_after is None:
        return run_measured(command, environment)
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
    )
    timer = threading.Timer(kill_after, lambda: process.send_signal(signal.SIGKILL))
    timer.start()
    stdout, stderr = process.communicate()
    timer.cancel()
    return Run(process.returncode, stdout, stderr, time.perf_counter() - started, 0.0)


def ingest(
    folder: Path, data: Path, env: dict[str, str] | None = None, *urls: str, **kw: Any
) -> Run:
    command = [str(ROOT / "ingest.py"), str(folder), *urls, "--data-dir", str(data)]
    return run(command, env, **kw)


def stored(data: Path, settings_env: dict[str, Any] | None = None) -> set[str]:
    settings = load_settings(data_dir=data, **(settings_env or {}))
    with Pipeline(settings, check_embedder=False) as pipeline:
        return pipeline.store.ids()


def sources(data: Path, settings_env: dict[str, Any] | None = None) -> set[str]:
    settings = load_settings(data_dir=data, **(settings_env or {}))
    with Pipeline(settings, check_embedder=False) as pipeline:
        return {source for _, source in pipeline.store.records()}


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:160] if lines else ""


def crashed(result: Run) -> bool:
    return result.code not in (0, 1, 2, 130) or "Traceback" in result.stderr


# --- hostile inputs ----------------------------------------------------------------------


def hostile_inputs(work: Path, quick: bool, figures: Figures) -> None:
    site = Site()
    site.pages["/huge.html"] = Page(b"<p>" + b"big " * ((8 if quick else 60) * 2**18) + b"</p>")
    site.pages["/slow.html"] = Page(b"<p>" + b"slow " * 4_000 + b"</p>", drip=0.01)
    makers: dict[str, Callable[[Path], Path | str]] = {
        "web page of 60 MB (past web.max_page_mb)": lambda f: site.url("/huge.html"),
        "web page dripping a byte each 10 ms": lambda f: site.url("/slow.html"),
        "zip-bomb DOCX": lambda f: hostile.zip_bomb_docx(f / "bomb.docx", 64 if quick else 1024),
        "zip-bomb PPTX": lambda f: hostile.zip_bomb(f / "bomb.pptx", 64 if quick else 1024),
        "zip-bomb XLSX": lambda f: hostile.zip_bomb(f / "bomb.xlsx", 64 if quick else 1024),
        "zip-bomb EPUB": lambda f: hostile.zip_bomb(f / "bomb.epub", 64 if quick else 1024),
        "sheet of 6 million cells": lambda f: hostile.huge_sheet(
            f / "huge.xlsx", 600_000 if quick else 6_000_000
        ),
        "mail of 100,000 parts": lambda f: hostile.mail_bomb(
            f / "bomb.eml", 5_000 if quick else 100_000
        ),
        "PDF of many pages": lambda f: hostile.many_pages_pdf(
            f / "long.pdf", 300 if quick else 10_000
        ),
        "text on one line": lambda f: hostile.one_line_text(f / "line.txt", 2 if quick else 50),
        "deeply nested HTML": lambda f: hostile.deep_html(f / "deep.html", 100_000),
        "CSV with many columns": lambda f: hostile.wide_csv(
            f / "wide.csv", 20_000 if quick else 1_000_000
        ),
        "strange file names": lambda f: hostile.hostile_names(f)[0],
        "symlink out of the folder": lambda f: _outside_link(f),
        "prompt structure and special tokens": lambda f: hostile.injection_document(
            f / "inject.md"
        ),
    }
    base = work / "baseline"
    (base / "docs").mkdir(parents=True)
    (base / "docs" / "normal.md").write_text(NORMAL)
    baseline = ingest(base / "docs", base / "data")
    figures.add(
        "baseline", baseline.code == 0, f"{baseline.seconds:.1f}s, {baseline.peak_mb:.0f} MB"
    )
    for name, make in makers.items():
        case = work / name.replace(" ", "-")
        docs = case / "docs"
        docs.mkdir(parents=True)
        (docs / "normal.md").write_text(NORMAL)
        made = make(docs)
        result = ingest(docs, case / "data", None, *([made] if isinstance(made, str) else []))
        failed = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
        named = all(": " in line.removeprefix("failed: ") for line in failed)
        lost = 0 if "normal.md" in sources(case / "data") else 1
        ok = not crashed(result) and named and lost == 0 and result.code in (0, 1)
        figures.add(
            f"hostile: {name}",
            ok,
            f"exit {result.code}, {result.seconds:.1f}s ({result.seconds / baseline.seconds:.1f}x "
            f"baseline), {result.peak_mb:.0f} MB ({result.peak_mb / baseline.peak_mb:.1f}x); "
            + ("; ".join(failed)[:200] or result.stdout.strip()[-120:]),
            seconds=result.seconds,
            peak_mb=result.peak_mb,
            lost=lost,
            crashed=crashed(result),
            hostile=True,
        )
        shutil.rmtree(case / "docs")  # the big files
    site.close()


def _outside_link(folder: Path) -> Path:
    outside = folder.parent / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("A file outside the ingested folder.\n")
    link = folder / "linked.txt"
    link.symlink_to(outside / "secret.txt")
    return link


# --- faults --------------------------------------------------------------------------------


def corpus(folder: Path, files: int) -> Path:
    folder.mkdir(parents=True)
    for n in range(files):
        body = "\n\n".join(paragraphs(f"topic {n}", 8))
        (folder / f"doc{n:02d}.md").write_text(f"# Document {n}\n\n{body}\n")
    return folder


def sigkills(work: Path, kills: int, figures: Figures) -> None:
    docs = corpus(work / "kill-docs", 40)
    clean = ingest(docs, work / "kill-clean")
    expected = stored(work / "kill-clean")
    rng = random.Random(20)
    crashes = 0
    for _ in range(kills):
        result = ingest(docs, work / "kill-data", kill_after=rng.uniform(0.5, clean.seconds))
        crashes += crashed(result) and result.code != -9
        stored(work / "kill-data")  # opens and reads after every kill
    final = ingest(docs, work / "kill-data")
    same = stored(work / "kill-data") == expected
    lost = len(sources(work / "kill-clean") - sources(work / "kill-data"))
    figures.add(
        f"fault: SIGKILL at {kills} random moments, then a rerun",
        same and final.code == 0 and crashes == 0,
        f"store equals a clean run: {same}; rerun exit {final.code}",
        lost=lost,
        crashed=bool(crashes),
    )


def disk_full(work: Path, figures: Figures) -> None:
    if os.geteuid() != 0:
        figures.add("fault: disk full", True, "skipped: mounting a small tmpfs needs root")
        return
    docs = corpus(work / "full-docs", 200)
    mount = work / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        result = ingest(docs, mount / "data")
        readable = True
        try:
            partial = stored(mount / "data")
        except RagError:
            readable, partial = False, set()
        shutil.copytree(mount / "data", work / "full-data")
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    rerun = ingest(docs, work / "full-data")
    clean = ingest(docs, work / "full-clean")
    same = stored(work / "full-data") == stored(work / "full-clean")
    figures.add(
        "fault: disk full mid-ingest, then a rerun with space",
        not crashed(result) and result.code != 0 and same and rerun.code == 0 and clean.code == 0,
        f"exit {result.code}: {last_line(result.stderr)}; "
        f"store readable after: {readable} ({len(partial)} chunks); "
        f"rerun equals a clean run: {same}",
        crashed=crashed(result),
        lost=0 if same else 1,
    )


def chroma_killed(work: Path, figures: Figures) -> None:
    docs = corpus(work / "server-docs", 40)
    port = free_port()
    server = start_chroma(work / "server-db", port)
    env = {
        "RAG_STORE__MODE": "server",
        "RAG_STORE__SERVER__PORT": str(port),
        "RAG_INGEST__GROUP_CHUNKS": "16",
    }
    settings_env = {"store": {"mode": "server", "server": {"port": port}}}
    try:
        killer = threading.Timer(6.0, server.kill)
        killer.start()
        broken = ingest(docs, work / "server-data", env)
        killer.cancel()
        server.wait()
        server = start_chroma(work / "server-db", port)
        rerun = ingest(docs, work / "server-data", env)
        clean_env = {**env, "RAG_STORE__COLLECTION": "clean"}
        ingest(docs, work / "server-data", clean_env)
        same = stored(work / "server-data", settings_env) == stored(
            work / "server-data",
            {"store": {"mode": "server", "server": {"port": port}, "collection": "clean"}},
        )
        figures.add(
            "fault: Chroma server killed mid-ingest, restarted, rerun",
            not crashed(broken) and broken.code == 2 and rerun.code == 0 and same,
            f"exit {broken.code}: {last_line(broken.stderr)}; rerun equals a clean run: {same}",
            crashed=crashed(broken),
            lost=0 if same else 1,
        )
        settings = load_settings(
            data_dir=work / "server-data", store={"mode": "server", "server": {"port": port}}
        )
        with Pipeline(settings) as pipeline:
            retriever = pipeline.retriever
            retriever.retrieve("topic 3")
            server.kill()
            server.wait()
            try:
                retriever.retrieve("topic 3")
                message, ok = "no error while the server was down", False
            except StoreError as error:
                message, ok = str(error)[:120], True
            server = start_chroma(work / "server-db", port)
            ok = ok and bool(retriever.retrieve("topic 3"))
        figures.add("fault: Chroma server killed mid-query, restarted", ok, message, crashed=not ok)
    finally:
        server.kill()


def llm_server_faults(work: Path, figures: Figures) -> None:
    prompt = Prompt(messages=[], completion="Question: Name the days of the week.\nAnswer:")

    def attempt(
        name: str, settings: dict[str, Any], during: Callable[[], None] | None = None
    ) -> None:
        llm = make_llm(load_settings(llm={"backend": "openai", "chat": False, **settings}).llm)
        started = time.perf_counter()
        try:
            for n, _ in enumerate(llm.stream(prompt)):
                if n == 2 and during is not None:
                    during()
            message, ok = "no error", False
        except LLMError as error:
            message, ok = str(error)[:120], True
        except Exception as error:  # any other type is what this case hunts
            message, ok = f"{type(error).__name__}: {error}"[:120], False
        seconds = time.perf_counter() - started
        figures.add(f"fault: LLM server {name}", ok, f"{seconds:.1f}s: {message}", crashed=not ok)

    attempt(
        "refusing", {"server": {"base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "m"}}
    )
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    port = silent.getsockname()[1]
    attempt(
        "hanging",
        {"server": {"base_url": f"http://127.0.0.1:{port}/v1", "model": "m", "timeout_s": 3}},
    )
    silent.close()

    port = free_port()
    server = start_llama_server(port)
    try:
        attempt(
            "dying mid-stream",
            {"server": {"base_url": f"http://127.0.0.1:{port}/v1"}, "max_tokens": 400},
            during=server.kill,
        )
    finally:
        server.kill()


def app_under_load(work: Path, seconds: float, figures: Figures) -> None:
    """Two ingests looping in terminals while two browser tabs chat, for ``seconds``."""
    from playwright.sync_api import sync_playwright

    data = work / "app-data"
    folders = [corpus(work / f"app-docs-{n}", 12) for n in (1, 2)]
    ingest(ROOT / "data" / "sample", data)
    port = free_port()
    env = {**os.environ, "RAG_DATA_DIR": str(data), "RAG_UI__PORT": str(port)}
    log = (work / "app.log").open("w")
    app = subprocess.Popen([sys.executable, "-m", "rag.cli", "ui"], env=env, stdout=log, stderr=log)
    wait_until_serving(f"http://127.0.0.1:{port}", lambda r: r.status_code == 200, app, None)
    deadline = time.monotonic() + seconds
    results: list[Run] = []

    def ingest_loop(folder: Path) -> None:
        round_ = 0
        while time.monotonic() < deadline:
            (folder / "changing.md").write_text(f"# Changing\n\nRound {round_} of the edits.\n")
            results.append(ingest(folder, data))
            round_ += 1

    answered, problems = 0, []
    try:
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True)
            tabs = [browser.new_page(), browser.new_page()]
            for tab in tabs:
                tab.goto(f"http://127.0.0.1:{port}", timeout=180_000)
                tab.get_by_test_id("stChatInput").wait_for(timeout=180_000)
            threads = [threading.Thread(target=ingest_loop, args=(f,)) for f in folders]
            for thread in threads:
                thread.start()
            questions = ["How long does a full charge take?", "What does the warranty cover?"]
            asked = 0
            while time.monotonic() < deadline:
                for n, tab in enumerate(tabs):  # both tabs ask, then both wait
                    box = tab.get_by_test_id("stChatInputTextArea")
                    box.fill(questions[(asked + n) % 2])
                    box.press("Enter")
                for tab in tabs:
                    messages = tab.get_by_test_id("stChatMessage")
                    messages.nth(2 * asked + 1).get_by_test_id("stExpander").first.wait_for(
                        timeout=180_000
                    )
                    answered += 1
                    if tab.get_by_test_id("stException").count():
                        problems.append(tab.get_by_test_id("stException").first.inner_text())
                asked += 1
            for thread in threads:
                thread.join()
            browser.close()
    finally:
        app.terminate()
        app.wait(timeout=60)
        log.close()
    clean = work / "app-clean"
    ingest(ROOT / "data" / "sample", clean)
    for folder in folders:
        ingest(folder, clean)
    same = stored(data) == stored(clean)
    bad = [r for r in results if r.code != 0 or crashed(r)]
    figures.add(
        f"fault: two terminal ingests and two chatting tabs for {seconds:.0f}s",
        not bad and not problems and same,
        f"{len(results)} ingests ({len(bad)} failed), {answered} answers, "
        f"{len(problems)} exceptions shown; store equals a clean run: {same}",
        crashed=bool(problems or any(crashed(r) for r in results)),
        lost=0 if same else 1,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 5 kills")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument(
        "--part", choices=("all", "hostile", "faults"), default="all", help="what to run"
    )
    args = parser.parse_args()
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="rag-faults-") as folder:
        work = Path(folder)
        if args.part in ("all", "hostile"):
            hostile_inputs(work / "hostile", args.quick, figures)
        if args.part in ("all", "faults"):
            sigkills(work / "kill", 5 if args.quick else 20, figures)
            disk_full(work / "disk", figures)
            chroma_killed(work / "chroma", figures)
            llm_server_faults(work / "llm", figures)
            app_under_load(work / "app", 20 if args.quick else 60, figures)
    cases = [c for c in figures.cases if c["case"] != "baseline"]
    summary: dict[str, Any] = {
        "cases": len(cases),
        "passed": sum(c["ok"] for c in cases),
        "crashes": sum(bool(c.get("crashed")) for c in cases),
        "documents_lost": sum(int(c.get("lost", 0)) for c in cases),
    }
    hostile_cases = [c for c in cases if c.get("hostile")]
    if hostile_cases:
        slowest = max(hostile_cases, key=lambda c: c["seconds"])
        largest = max(hostile_cases, key=lambda c: c["peak_mb"])
        summary["longest_hostile_file"] = f"{slowest['case']}: {slowest['seconds']:.1f}s"
        summary["highest_memory_hostile_file"] = f"{largest['case']}: {largest['peak_mb']:.0f} MB"
        summary["baseline"] = figures.cases[0]["detail"]
    print("\n" + "\n".join(f"{name}: {value}" for name, value in summary.items()))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "cases": figures.cases}, indent=2))


if __name__ == "__main__":
    main()
