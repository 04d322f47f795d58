"""The chat page through Streamlit's AppTest, with the real store and models."""

from pathlib import Path
from typing import Any

import pytest
from streamlit.delta_generator import DeltaGenerator
from streamlit.testing.v1 import AppTest

from rag.conversations import Conversations
from rag.documents.uploads import safe_file_name, save_upload
from rag.models.embeddings import Embedder
from rag.models.llm import bundled_gguf_path
from rag.settings import load_settings
from tests.conftest import ROOT, ingest
from tests.servers import free_port
from ui.services import plain

APP = str(ROOT / "ui" / "app.py")
SAMPLE = ROOT / "data" / "sample"


def test_plain_shows_markup_literally() -> None:
    hostile = "<script>alert(1)</script> <img src=x onerror=alert(1)> [link](http://x) ![i](y) *b*"
    shown = plain(hostile)
    for character in "<>[]()!*":
        assert character not in shown.replace(f"\\{character}", "")  # every one escaped
    assert plain("one\ntwo") == "one  \ntwo"


def test_upload_names_cannot_leave_the_uploads_folder(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    for name in ("../../x.txt", "/etc/passwd.txt", "..\\..\\y.txt", "a/../../z.md"):
        path = save_upload(uploads, name, b"data").path
        assert path.parent == uploads.resolve()
    assert sorted(p.name for p in uploads.iterdir()) == ["passwd.txt", "x.txt", "y.txt", "z.md"]
    assert safe_file_name("ré sumé<1>.pdf") == "ré sumé_1_.pdf"
    assert safe_file_name(".hidden.txt") == "hidden.txt"  # never a hidden file
    for unusable in ("..", "...", "   ", "../"):
        with pytest.raises(ValueError, match="not a usable file name"):
            safe_file_name(unusable)
    assert not (tmp_path / "x.txt").exists()
    long = safe_file_name("a" * 300 + ".pdf")
    assert long.endswith(".pdf")
    assert len(long) <= 150


def test_uploads_with_one_name_are_kept_apart_and_a_replacement_is_said(tmp_path: Path) -> None:
    first = save_upload(tmp_path, "report?.txt", b"one").path
    second = save_upload(tmp_path, "report*.txt", b"two", taken={first}).path
    assert (first.name, second.name) == ("report_.txt", "report_ (2).txt")
    assert first.read_bytes() == b"one"
    assert save_upload(tmp_path, "report?.txt", b"three").replaced
    assert not save_upload(tmp_path, "new.txt", b"four").replaced


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    data_dir = tmp_path_factory.mktemp("ui-sample")
    assert ingest(load_settings(data_dir=data_dir), embedder, SAMPLE).ok
    return data_dir


def app(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, *, fresh: bool = True, **env: str
) -> AppTest:
    """The page in a new browser session; ``fresh``: with no earlier conversation to open."""
    if fresh:
        (data_dir / "conversations.sqlite3").unlink(missing_ok=True)
    monkeypatch.setenv("RAG_DATA_DIR", str(data_dir))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return AppTest.from_file(APP, default_timeout=300).run()


@pytest.mark.slow
def test_chat_answers_with_sources_and_starts_over(
    monkeypatch: pytest.MonkeyPatch, sample_dir: Path
) -> None:
    page = app(monkeypatch, sample_dir)
    assert not page.exception
    assert not page.error
    sidebar = " ".join(m.value for m in page.sidebar.markdown)
    assert "user\\-guide\\.md · 4 chunks" in sidebar
    captions = " ".join(c.value for c in page.sidebar.caption)
    assert "Device: CPU" in captions.replace("\\", "")
    check = page.sidebar.expander[-1]  # rag doctor's summary, taken at start
    assert check.label == "Machine check (rag doctor)"
    lines = [c.value.replace("\\", "") for c in check.caption]
    assert lines[0].startswith("working: 0 failed")
    assert any(line.startswith("offload: 0 of 18 layers on the GPU") for line in lines)

    page.chat_input[0].set_value("How long does a full charge of the battery take?").run()
    assert not page.exception
    answer = page.chat_message[1]
    assert answer.name == "assistant"
    assert "4.5 hours" in answer.markdown[0].value.replace("\\", "")
    expander = answer.expander[0]
    assert expander.label.startswith("Sources (1 cited")
    assert "user-guide.md" in expander.markdown[0].value.replace("\\", "")

    page.chat_input[0].set_value("Who won the 2022 football world cup?").run()
    assert "I don't know" in page.chat_message[3].markdown[0].value.replace("\\", "")
    chats = [b for b in page.sidebar.button if b.key and b.key.startswith("chat:")]
    assert [b.label.replace("\\", "") for b in chats] == [
        "How long does a full charge of the battery take?"
    ]

    again = app(monkeypatch, sample_dir, fresh=False)  # a reload, another tab: the same chat
    assert [m.name for m in again.chat_message] == ["user", "assistant"] * 2
    shown = again.chat_message[1]
    assert "4.5 hours" in shown.markdown[0].value.replace("\\", "")
    assert shown.expander[0].label.startswith("Sources (1 cited")
    assert "I don't know" in again.chat_message[3].markdown[0].value.replace("\\", "")
    again.chat_input[0].set_value("What does it weigh?").run()  # goes on where it was
    assert len(again.chat_message) == 6

    page.sidebar.button[0].click().run()  # new chat
    assert len(page.chat_message) == 0
    page.chat_input[0].set_value("How many charge cycles does the warranty cover?").run()
    chats = [b for b in page.sidebar.button if b.key and b.key.startswith("chat:")]
    assert len(chats) == 2  # the newest first, shown
    assert chats[0].label.startswith("How many charge cycles")
    chats[1].click().run()
    assert len(page.chat_message) == 6


@pytest.mark.slow
def test_the_chat_never_shows_text_the_answer_takes_back(
    monkeypatch: pytest.MonkeyPatch, sample_dir: Path
) -> None:
    shown: list[str] = []
    markdown = DeltaGenerator.markdown

    def recorded(self: DeltaGenerator, body: Any, *args: Any, **kwargs: Any) -> Any:
        shown.append(str(body).replace("\\", ""))
        return markdown(self, body, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "markdown", recorded)
    page = app(monkeypatch, sample_dir)
    # The bundled model copies the warranty's exclusions here; the check quotes the passage.
    page.chat_input[0].set_value("Where is the frame number engraved?").run()
    answer = page.chat_message[1]
    final = answer.markdown[0].value.replace("\\", "")
    assert "bottom bracket" in final
    quoted = " ".join(c.value for c in answer.caption).replace("\\", "")
    model_text = quoted.split("The model wrote: ")[1]  # said below the answer, as a note
    streamed = [text for text in shown if text and final.startswith(text)]
    assert streamed, "the answer was drawn as it came"
    assert not [text for text in shown if model_text[:30] in text]


@pytest.mark.slow
def test_a_cited_pdf_page_is_shown_with_the_passage_marked(
    monkeypatch: pytest.MonkeyPatch, sample_dir: Path
) -> None:
    page = app(monkeypatch, sample_dir)
    page.chat_input[0].set_value("How many charge cycles does the warranty cover?").run()
    sources = page.chat_message[1].expander[0]
    assert "warranty.pdf, page 1" in sources.markdown[0].value.replace("\\", "")
    assert len(sources.get("image")) == 1
    captions = [c.value.replace("\\", "") for c in sources.caption]
    assert "warranty.pdf, page 1, the cited passage marked" in captions


@pytest.mark.slow
def test_a_follow_up_uses_the_conversation(
    monkeypatch: pytest.MonkeyPatch, sample_dir: Path
) -> None:
    page = app(monkeypatch, sample_dir)
    page.chat_input[0].set_value("What does the warranty cover on the frame?").run()
    page.chat_input[0].set_value("and for how many charge cycles?").run()
    follow_up = page.chat_message[3]
    assert "warranty.pdf" in follow_up.expander[0].markdown[0].value.replace("\\", "")


@pytest.mark.slow
def test_empty_store_shows_how_to_add_documents_and_removal_works(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, embedder: Embedder
) -> None:
    page = app(monkeypatch, tmp_path / "empty")
    assert not page.exception
    assert "No documents yet" in page.info[0].value

    settings = load_settings(data_dir=tmp_path / "one")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "note.md").write_text("# Note\n\nThe kestrel hovers.\n")
    assert ingest(settings, embedder, tmp_path / "docs").ok
    page = app(monkeypatch, tmp_path / "one")
    assert not page.info
    remove = next(b for b in page.sidebar.button if b.key and b.key.startswith("remove:"))
    remove.click().run()
    assert not page.exception
    assert not page.info, "one click asks first; nothing is removed yet"
    assert "Take note.md out of the index?" in page.sidebar.warning[0].value.replace("\\", "")
    next(b for b in page.sidebar.button if b.label == "Keep it").click().run()
    assert not page.sidebar.warning
    assert not page.info
    remove.click().run()
    next(b for b in page.sidebar.button if b.label == "Remove it").click().run()
    assert not page.exception
    assert "No documents yet" in page.info[0].value
    assert (tmp_path / "docs" / "note.md").exists()  # only the index entry went


@pytest.mark.slow
def test_missing_model_and_unreachable_servers_are_messages_not_tracebacks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sample_dir: Path
) -> None:
    page = app(monkeypatch, tmp_path, RAG_LLM__LLAMA_CPP__MODEL_PATH=str(tmp_path / "missing.gguf"))
    assert not page.exception
    assert "does not exist" in page.error[0].value
    monkeypatch.delenv("RAG_LLM__LLAMA_CPP__MODEL_PATH")
    page = app(
        monkeypatch,
        tmp_path,
        RAG_STORE__MODE="server",
        RAG_STORE__SERVER__PORT=str(free_port()),
    )
    assert not page.exception
    assert "cannot start" in page.error[0].value
    monkeypatch.delenv("RAG_STORE__MODE")
    monkeypatch.delenv("RAG_STORE__SERVER__PORT")
    page = app(  # the LLM server may come up later: the page opens, the question says why not
        monkeypatch,
        sample_dir,
        RAG_LLM__BACKEND="openai",
        RAG_LLM__SERVER__BASE_URL=f"http://127.0.0.1:{free_port()}/v1",
    )
    assert not page.exception
    assert not page.error
    page.chat_input[0].set_value("How long does a full charge of the battery take?").run()
    assert not page.exception
    assert "No answer" in page.error[0].value


@pytest.mark.slow
def test_settings_beyond_the_usual_range_open_the_page(
    monkeypatch: pytest.MonkeyPatch, sample_dir: Path
) -> None:
    page = app(monkeypatch, sample_dir, RAG_RETRIEVAL__K="20", RAG_LLM__MAX_TOKENS="4096")
    assert not page.exception
    assert page.sidebar.slider[0].value == 20
    assert page.sidebar.number_input[0].value == 4096


@pytest.mark.slow
def test_an_unfinished_answer_is_shown_so_and_pairs_with_nothing(
    monkeypatch: pytest.MonkeyPatch, sample_dir: Path
) -> None:
    (sample_dir / "conversations.sqlite3").unlink(missing_ok=True)
    chats = Conversations(sample_dir / "conversations.sqlite3", "default")
    conversation = chats.start("What does the warranty cover?").id
    chats.ask(conversation, "What does the warranty cover?")  # the app was stopped meanwhile
    page = app(monkeypatch, sample_dir, fresh=False)
    assert "No answer stored" in page.chat_message[1].caption[0].value
    page.chat_input[0].set_value("How long does a full charge of the battery take?").run()
    assert "4.5 hours" in page.chat_message[3].markdown[0].value.replace("\\", "")
    history = chats.history(conversation)  # what the next follow-up reads
    assert [turn.question for turn in history] == [
        "How long does a full charge of the battery take?"
    ]
    assert [e.state for e in chats.exchanges(conversation)] == ["answering", "answered"]


@pytest.mark.slow
def test_workspaces_keep_their_documents_apart_in_the_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, embedder: Embedder
) -> None:
    data = tmp_path / "data"
    assert ingest(load_settings(data_dir=data), embedder, SAMPLE).ok
    page = app(monkeypatch, data)

    def button(label: str) -> Any:
        return next(b for b in page.sidebar.button if b.label == label)

    def documents() -> str:
        return " ".join(m.value for m in page.sidebar.markdown).replace("\\", "")

    page.text_input(key="new_workspace").set_value("birds")
    button("Create").click().run()
    assert page.sidebar.selectbox[0].value == "birds"
    assert "Nothing indexed yet." in [c.value for c in page.sidebar.caption]
    birds = tmp_path / "birds"
    birds.mkdir()
    (birds / "kestrel.md").write_text("# Kestrels\n\nThe kestrel hovers over the meadow.\n")
    assert ingest(load_settings(data_dir=data, workspace="birds"), embedder, birds).ok
    page.run()
    assert "kestrel.md" in documents()
    assert "user-guide.md" not in documents()
    page.chat_input[0].set_value("How long does a full charge of the battery take?").run()
    assert "I don't know" in page.chat_message[1].markdown[0].value.replace("\\", "")

    page.sidebar.selectbox[0].select("default").run()
    assert len(page.chat_message) == 0  # a conversation stays in its workspace
    assert "user-guide.md" in documents()
    assert "kestrel.md" not in documents()

    page.sidebar.selectbox[0].select("birds").run()
    assert len(page.chat_message) == 2  # its own chat comes back with it
    page.text_input(key="workspace_name").set_value("raptors")
    page.button(key="rename_workspace").click().run()
    assert page.sidebar.selectbox[0].options == ["default", "raptors"]
    assert "kestrel.md" in documents()
    assert len(page.chat_message) == 2
    page.checkbox(key="remove_workspace_sure").check().run()
    page.button(key="remove_workspace").click().run()
    assert page.sidebar.selectbox[0].options == ["default"]
    assert page.sidebar.selectbox[0].value == "default"
    assert "user-guide.md" in documents()  # nothing else removed
    assert not (data / "workspaces" / "raptors").exists()
    assert Conversations(data / "conversations.sqlite3", "raptors").recent() == []


@pytest.mark.slow
def test_a_model_chosen_in_the_sidebar_answers_and_is_remembered(
    monkeypatch: pytest.MonkeyPatch, sample_dir: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "other-gemma.gguf").symlink_to(bundled_gguf_path())
    page = app(monkeypatch, sample_dir, RAG_LLM__MODEL_DIRS=f'["{models}"]')
    chooser = next(box for box in page.sidebar.selectbox if box.label == "Model")
    assert len(chooser.options) == 2
    chooser.select_index(1).run()
    captions = " ".join(c.value for c in page.sidebar.caption).replace("\\", "")
    assert "Model: other-gemma.gguf" in captions
    page.chat_input[0].set_value("How long does a full charge of the battery take?").run()
    assert "4.5 hours" in page.chat_message[1].markdown[0].value.replace("\\", "")
    chats = Conversations(sample_dir / "conversations.sqlite3", "default")
    latest = chats.latest()
    assert latest is not None
    assert [e.model for e in chats.exchanges(latest.id)] == ["other-gemma.gguf"]

    again = app(monkeypatch, sample_dir, RAG_LLM__MODEL_DIRS=f'["{models}"]')  # next visit
    captions = " ".join(c.value for c in again.sidebar.caption).replace("\\", "")
    assert "Model: other-gemma.gguf" in captions
    (sample_dir / "chosen-model.txt").unlink()
