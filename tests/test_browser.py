"""End to end in a real headless Chromium (Debian's package, driven by Playwright).

The app runs as ``rag ui`` on a free port on 127.0.0.1 with an empty store; the test uploads a
document, asks a question it answers, checks the streamed answer and its source, checks that
markup in the document is shown literally, then asks what it cannot answer.
"""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.servers import free_port, server_store_environment, wait_until_serving

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOCUMENT = """# Kestrel X9 drone

The Kestrel X9 drone flies for 47 minutes on one battery.
"""
HOSTILE = """# Flight log

Pilots wrote <script>alert('xss')</script> and <img src=x onerror=alert(1)> in the flight log.
"""


def start_app(data_dir: Path, port: int, log: Path, **settings: str) -> subprocess.Popen[bytes]:
    """``rag ui`` on 127.0.0.1:port, waited for until healthy; ``settings`` as RAG_ variables."""
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir), **settings}
    command = [sys.executable, "-m", "rag.cli", "ui", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    health = f"http://127.0.0.1:{port}/_stcore/health"
    wait_until_serving(health, lambda response: response.text == "ok", process, log)
    return process


@pytest.fixture
def app_url(tmp_path: Path) -> Iterator[str]:
    """The app on a free port, over an empty store in ``tmp_path / "data"``."""
    port = free_port()
    process = start_app(tmp_path / "data", port, tmp_path / "app.log")
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)


def ask(page: Page, question: str) -> None:
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    box.press("Enter")


def test_upload_ask_see_sources_and_refusal_in_chromium(app_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: `apt-get install chromium`"
    document, hostile = tmp_path / "kestrel.md", tmp_path / "flight-log.md"
    document.write_text(DOCUMENT)
    hostile.write_text(HOSTILE)
    dialogs: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))  # one would be a bug
        page.goto(app_url)
        expect(page.get_by_text("No documents yet")).to_be_visible(timeout=120_000)

        page.locator("input[type=file]").set_input_files([str(document), str(hostile)])
        page.get_by_role("button", name="Ingest").click()
        expect(page.get_by_text("Added 2, updated 0")).to_be_visible(timeout=120_000)
        expect(page.get_by_text("kestrel.md · 1 chunk")).to_be_visible()

        ask(page, "How long does the Kestrel X9 drone fly on one battery?")
        answer = page.get_by_test_id("stChatMessage").nth(1)
        text = answer.get_by_test_id("stMarkdownContainer").first
        expect(text).to_contain_text("47 minutes", timeout=120_000)
        answer.get_by_text("Sources (1 cited").click()
        expect(answer).to_contain_text("[1] kestrel.md")
        expect(answer).to_contain_text("# Kestrel X9 drone The Kestrel X9")  # the snippet
        page.screenshot(path=str(tmp_path / "chat.png"))
        if os.environ.get("UI_SCREENSHOT"):
            page.screenshot(path=os.environ["UI_SCREENSHOT"])

        ask(page, "What did the pilots write in the flight log?")
        log_answer = page.get_by_test_id("stChatMessage").nth(3)
        expect(log_answer.get_by_text("Sources (")).to_be_visible(timeout=120_000)
        log_answer.get_by_text("Sources (").click()
        # The document's markup is text on the page, never markup in it.
        expect(log_answer).to_contain_text("<script>alert('xss')</script>")
        expect(log_answer).to_contain_text("<img src=x onerror=alert(1)>")
        assert page.locator("img[src=x]").count() == 0

        ask(page, "Who won the 2022 football world cup?")
        refusal = page.get_by_test_id("stChatMessage").nth(5)
        expect(refusal).to_contain_text("I don't know", timeout=120_000)
        browser.close()
    assert dialogs == []  # no script ran
    assert (tmp_path / "chat.png").stat().st_size > 10_000


def test_two_tabs_at_once_and_a_terminal_ingest_beside_an_upload(
    app_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.conftest import ROOT

    document = tmp_path / "kestrel.md"
    document.write_text(DOCUMENT)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        first, second = browser.new_page(), browser.new_page()
        for page in (first, second):
            page.goto(app_url)
            expect(page.get_by_text("No documents yet")).to_be_visible(timeout=120_000)

        # `python ingest.py` in a terminal and an upload in the app, at the same time.
        terminal = subprocess.Popen(
            [sys.executable, str(ROOT / "ingest.py"), str(ROOT / "data" / "sample")],
            env={**os.environ, "RAG_DATA_DIR": str(tmp_path / "data")},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        first.locator("input[type=file]").set_input_files(str(document))
        first.get_by_role("button", name="Ingest").click()
        expect(first.get_by_text("Added 1, updated 0")).to_be_visible(timeout=180_000)
        output, _ = terminal.communicate(timeout=180)
        assert terminal.returncode == 0, output
        assert b"added 6" in output

        # Two tabs ask at once; each gets its own answer.
        ask(first, "How long does a full charge of the battery take?")
        ask(second, "How long does the Kestrel X9 drone fly on one battery?")
        for page, expected in ((first, "4.5 hours"), (second, "47 minutes")):
            text = page.get_by_test_id("stChatMessage").nth(1).get_by_test_id("stMarkdownContainer")
            expect(text.first).to_contain_text(expected, timeout=180_000)
        browser.close()

    listing = subprocess.run(
        [sys.executable, "-m", "rag.cli", "sources", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "7 documents, 16 chunks" in listing.stdout  # the 6 samples (15 chunks) and the upload


def test_rag_ui_passes_its_settings_file_to_the_app(tmp_path: Path) -> None:
    port = free_port()
    settings_file = tmp_path / "app.toml"
    settings_file.write_text(
        f'data_dir = "{tmp_path / "data"}"\n\n[ui]\nport = {port}\nmax_upload_mb = 7\n'
    )
    log = tmp_path / "app.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "rag.cli", "ui", "--settings", str(settings_file)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        health = f"http://127.0.0.1:{port}/_stcore/health"
        wait_until_serving(health, lambda response: response.text == "ok", process, log)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}")
            expect(page.get_by_text("No documents yet")).to_be_visible(timeout=120_000)
            # A setting only the app itself reads: the file reached it.
            expect(page.get_by_text("Up to 7 MB each")).to_be_visible()
            browser.close()
        assert (tmp_path / "data" / "chroma").is_dir()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_an_upload_says_what_it_waits_for(app_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    from rag.settings import load_settings
    from rag.storage.locking import StoreLock

    document = tmp_path / "kestrel.md"
    document.write_text(DOCUMENT)
    lock = StoreLock(load_settings(data_dir=tmp_path / "data").lock_dir, 60)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page()
        page.goto(app_url)
        expect(page.get_by_text("No documents yet")).to_be_visible(timeout=120_000)
        with lock.writer():  # an ingest in a terminal holds the store
            page.locator("input[type=file]").set_input_files(str(document))
            page.get_by_role("button", name="Ingest").click()
            waiting = page.get_by_text("Waiting: another ingest is writing to the store")
            expect(waiting).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Added 1, updated 0")).to_be_visible(timeout=120_000)
        expect(waiting).to_have_count(0)
        browser.close()


def test_slides_and_mail_are_uploaded_and_cited_by_slide_and_message(
    app_url: str, tmp_path: Path
) -> None:
    from tests.docgen import mail_message, write_mbox, write_pptx

    deck = write_pptx(
        tmp_path / "launch.pptx",
        [
            ("Launch plan", ["The kettle ships in March."], ""),
            ("Risks", ["The thermostat supplier delivers in late April."], ""),
        ],
    )
    inbox = write_mbox(
        tmp_path / "inbox.mbox",
        [mail_message("Picnic", "Bring the blue blanket."), mail_message("Menu", "Soup.")],
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app_url)
        expect(page.get_by_text("No documents yet")).to_be_visible(timeout=120_000)
        page.locator("input[type=file]").set_input_files([str(deck), str(inbox)])
        page.get_by_role("button", name="Ingest").click()
        expect(page.get_by_text("Added 2, updated 0")).to_be_visible(timeout=120_000)
        ask(page, "When does the thermostat supplier deliver?")
        answer = page.get_by_test_id("stChatMessage").nth(1)
        expect(answer.get_by_text("Sources (1 cited")).to_be_visible(timeout=120_000)
        answer.get_by_text("Sources (1 cited").click()
        expect(answer).to_contain_text("[1] launch.pptx, slide 2")
        browser.close()


@pytest.mark.server
def test_two_app_machines_on_one_chroma_server_share_the_documents(
    tmp_path: Path, chroma_server: tuple[str, int]
) -> None:
    store = server_store_environment(chroma_server, "two-apps")
    ports = [free_port(), free_port()]
    # Two machines: each app its own data dir (uploads, keyword index), one Chroma server.
    apps = [
        start_app(tmp_path / f"machine{n}", port, tmp_path / f"app{n}.log", **store)
        for n, port in enumerate(ports)
    ]
    document = tmp_path / "kestrel.md"
    document.write_text(DOCUMENT)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            first, second = (browser.new_page() for _ in ports)
            first.goto(f"http://127.0.0.1:{ports[0]}")
            expect(first.get_by_text("No documents yet")).to_be_visible(timeout=120_000)
            first.locator("input[type=file]").set_input_files([str(document)])
            first.get_by_role("button", name="Ingest").click()
            expect(first.get_by_text("Added 1, updated 0")).to_be_visible(timeout=120_000)

            second.goto(f"http://127.0.0.1:{ports[1]}")
            expect(second.get_by_text("kestrel.md · 1 chunk")).to_be_visible(timeout=120_000)
            ask(second, "How long does the Kestrel X9 drone fly on one battery?")
            answer = second.get_by_test_id("stChatMessage").nth(1)
            expect(answer).to_contain_text("47 minutes", timeout=120_000)
            answer.get_by_text("Sources (1 cited").click()
            expect(answer).to_contain_text("[1] kestrel.md")
            browser.close()
    finally:
        for app in apps:
            app.terminate()
            app.wait(timeout=30)


def test_a_chat_lasts_through_reloads_tabs_and_a_restart(tmp_path: Path) -> None:
    port, data = free_port(), tmp_path / "data"
    url = f"http://127.0.0.1:{port}"
    document = tmp_path / "kestrel.md"
    document.write_text(DOCUMENT)
    process = start_app(data, port, tmp_path / "app.log")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            first = browser.new_page(viewport={"width": 1280, "height": 700})
            first.goto(url)
            expect(first.get_by_text("No documents yet")).to_be_visible(timeout=120_000)
            first.locator("input[type=file]").set_input_files(str(document))
            first.get_by_role("button", name="Ingest").click()
            expect(first.get_by_text("Added 1, updated 0")).to_be_visible(timeout=120_000)
            messages = first.get_by_test_id("stChatMessage")
            for number in range(3):  # more than the window holds
                ask(first, "How long does the Kestrel X9 drone fly on one battery?")
                expect(messages.nth(2 * number + 1)).to_contain_text("47 minutes", timeout=120_000)
            expect(first.get_by_text("Sources (1 cited")).to_have_count(3, timeout=30_000)
            # The box is pinned at the bottom, under the newest answer, which is in view.
            box = first.get_by_test_id("stChatInputTextArea").bounding_box()
            newest = messages.nth(5).bounding_box()
            assert box is not None
            assert newest is not None
            assert box["y"] > 700 * 0.8
            assert newest["y"] + newest["height"] <= box["y"] + 5
            expect(messages.nth(5)).to_be_in_viewport()
            assert "chat=" in first.url

            first.reload()  # the same chat, from the address
            expect(messages).to_have_count(6, timeout=120_000)
            second = browser.new_page()
            second.goto(url)  # another tab, no address: the last chat
            expect(second.get_by_test_id("stChatMessage")).to_have_count(6, timeout=120_000)

            # Both tabs ask at once in the same chat: nothing is lost.
            ask(first, "What did the pilots write?")
            ask(second, "Who won the 2022 football world cup?")
            turns = second.get_by_test_id("stChatMessage")
            shown: list[str] = []
            for _ in range(60):  # until both answers are stored: a reload then shows them
                second.wait_for_timeout(2000)
                second.reload()
                expect(turns.first).to_be_visible(timeout=120_000)
                shown = [turns.nth(n).inner_text() for n in range(turns.count())]
                if len(shown) == 10 and not [text for text in shown if "No answer" in text]:
                    break
            assert len(shown) == 10, shown
            asked = {shown[6].splitlines()[-1], shown[8].splitlines()[-1]}  # after the avatar
            assert asked == {"What did the pilots write?", "Who won the 2022 football world cup?"}
            assert not [text for text in shown if "No answer" in text]
            # The export holds what the chat shows.
            second.get_by_text("This chat", exact=True).click()
            with second.expect_download() as download:
                second.get_by_role("button", name="Export as Markdown").click()
            exported = Path(download.value.path()).read_text()
            assert exported.count("## ") == 5
            assert exported.count("47 minutes") >= 3
            assert "Who won the 2022 football world cup?" in exported
            assert "- [1] kestrel.md" in exported
            browser.close()

        process.terminate()
        process.wait(timeout=30)
        process = start_app(data, port, tmp_path / "app2.log")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page()
            page.goto(url)  # after a restart: the same chat
            expect(page.get_by_test_id("stChatMessage")).to_have_count(10, timeout=120_000)
            expect(page.get_by_test_id("stChatMessage").nth(1)).to_contain_text("47 minutes")
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
