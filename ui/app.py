"""The chat page: ask questions of your documents, check the sources, add and remove documents.

Run with ``rag ui`` (it reads the settings for address, port and upload limit). Every text that
comes from a document, a file name or the model goes through :func:`plain`, so it is shown
literally, never as HTML or markdown.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import streamlit as st
import streamlit.components.v1 as components

from rag.answering.answer import label_of, source_label
from rag.answering.answerer import AskOptions
from rag.conversations import TITLE_CHARS, NoConversationError, answer_details, exchange_text
from rag.documents.page_view import cited_page
from rag.documents.scanning import printable
from rag.errors import RagError
from rag.ingest.ingestion import Progress
from rag.library import accept_uploads, list_documents, remove_document
from rag.models.catalog import find_models
from rag.settings import DEFAULT_WORKSPACE, LLMSettings, Settings, load_settings
from ui.services import UPLOAD_TYPES, Services, plain

CHATS_LISTED = 30  # the sidebar's list; the CLI lists them all

st.set_page_config(page_title="Ask your documents", page_icon=":material/forum:")


@st.cache_resource(show_spinner="Loading the models and the store…")
def services_for(settings_json: str) -> Services:
    """One set of services per process and settings, shared by every browser session."""
    return Services.build(Settings.model_validate_json(settings_json))


class BarProgress(Progress):
    """Ingest progress as a Streamlit progress bar over files."""

    def __init__(self) -> None:
        self.bar = st.progress(0.0, text="Reading files…")
        self.total = 0
        self.done = 0

    def files_total(self, count: int) -> None:
        """Set the number of files."""
        self.total = count

    def file_done(self) -> None:
        """Advance the bar."""
        self.done += 1
        self.bar.progress(min(1.0, self.done / max(self.total, 1)), text="Ingesting…")


def main() -> None:
    """Draw the page for one run of the script."""
    try:
        settings = load_settings()
        shared = services_for(settings.model_dump_json())
    except RagError as error:
        st.error(plain(f"The app cannot start: {error}"), icon=":material/error:")
        st.stop()
    state: Any = st.session_state
    # A reload keeps the address: the workspace and the chat come back from it.
    wanted = state.setdefault("workspace", st.query_params.get("workspace", settings.workspace))
    services = shared.in_workspace(wanted)
    state.workspace = services.workspace  # the default again when the chosen one was removed
    if "conversation" not in state:
        open_conversation(services, st.query_params.get("chat"))
    options = sidebar(services)

    st.title("Ask your documents")
    # Our own constant style, no document text: the "running" animation would take CPU from
    # the model on small machines while it reads the prompt.
    st.html("<style>[data-testid='stStatusWidget']{display:none}</style>")
    chat(services, options)


def open_conversation(services: Services, wanted: str | None) -> None:
    """Show conversation ``wanted``, else the workspace's last one, else a new chat."""
    state: Any = st.session_state
    try:
        listed = [c.id for c in services.conversations.recent()]  # the last asked in first
    except RagError as error:
        st.error(plain(f"Cannot read the conversations: {error}"), icon=":material/error:")
        listed = []
    chosen = wanted if wanted in listed else (listed[0] if listed else None)
    state.conversation = chosen
    st.query_params.clear()  # the address names what is shown, for a reload
    if services.workspace != DEFAULT_WORKSPACE:
        st.query_params["workspace"] = services.workspace
    if chosen is not None:
        st.query_params["chat"] = chosen


@st.fragment
def chat(services: Services, options: AskOptions) -> None:
    """The conversation. A question reruns only this part: the sidebar stays as it is."""
    state: Any = st.session_state
    settings = services.settings
    try:
        empty = services.store.count() == 0
        exchanges = (
            services.conversations.exchanges(state.conversation) if state.conversation else []
        )
    except NoConversationError:  # deleted in another tab
        exchanges = []
        state.conversation = None
    except RagError as error:
        st.error(plain(f"Cannot read the store: {error}"), icon=":material/error:")
        return
    if empty:
        st.info(
            "No documents yet. Upload some in the sidebar (txt, md, html, pdf, docx, csv), "
            "or run `python ingest.py PATH` in a terminal.",
            icon=":material/upload_file:",
        )
    for exchange in exchanges:
        with st.chat_message("user"):
            st.markdown(plain(exchange.question))
        with st.chat_message("assistant"):
            if exchange.state == "failed":
                st.error(plain(exchange_text(exchange)), icon=":material/error:")
            elif exchange.details is None:  # stopped while it streamed, or still streaming
                st.caption(plain(exchange_text(exchange)))
            else:
                st.markdown(plain(exchange.text))
                show_sources(exchange.details)

    with st.bottom:  # pinned under the conversation, as chat apps have it
        question = st.chat_input(
            "Ask a question about your documents",
            max_chars=settings.answer.max_question_chars,
        )
    if question:
        ask(services, question, options)
    scroll_to_newest()


def scroll_to_newest() -> None:
    """Scroll the page to its end, where the newest turn is, as chat apps do.

    Our own constant script (no document text), run in a zero-height frame of this page; the
    time makes each run's frame new, so the script runs again.
    """
    script = (
        f"<script>/* {time.time_ns()} */"
        "const main = window.parent.document.querySelector('[data-testid=\"stMain\"]');"
        "if (main) { main.scrollTo({top: main.scrollHeight}); }</script>"
    )
    components.html(script, height=0)


def ask(services: Services, question: str, options: AskOptions) -> None:
    """Show the question, stream the answer into the page, then its sources; store the turn."""
    state: Any = st.session_state
    chats = services.conversations
    try:
        started = state.conversation is None
        if started:
            state.conversation = chats.start(question).id
            st.query_params["chat"] = state.conversation
        history = chats.history(state.conversation)
        # Stored before it streams: a rerun that stops the stream leaves it interrupted.
        turn = chats.ask(state.conversation, question)
    except RagError as error:
        st.error(plain(f"Cannot keep the conversation: {error}"), icon=":material/error:")
        return
    with st.chat_message("user"):
        st.markdown(plain(question))
    scroll_to_newest()
    with st.chat_message("assistant"):
        shown = st.empty()
        text, ended, stream = "", False, None
        try:
            stream = services.answerer.stream(question, history, options)
            for piece in stream:
                text += piece
                shown.markdown(plain(text))
            answer = stream.result()
            chats.answer(turn, answer, services.model_name())
            ended = True
        except RagError as error:
            shown.empty()
            st.error(plain(f"No answer: {error}"), icon=":material/error:")
            chats.fail(turn, str(error))
            ended = True
            return
        finally:
            if not ended:  # a click or a new question stopped it: the model stops too
                if stream is not None:
                    stream.close()
                chats.interrupt(turn, text)
        shown.markdown(plain(answer.text))
        show_sources(answer_details(answer))
    if started:
        st.rerun()  # the whole page: the sidebar lists the new conversation


def show_sources(details: dict[str, Any]) -> None:
    """Under an answer: its notices, timings, and citations (file, page, score, snippet)."""
    for notice in details["notices"]:  # worded once, for every front door
        if notice["kind"] == "note":
            st.caption(plain(notice["text"]))
        else:
            text = notice["text"][:1].upper() + notice["text"][1:] + "."
            st.warning(plain(text), icon=":material/warning:")
    timings = details["timings"]
    st.caption(
        f"retrieval {timings.get('retrieval_s', 0):.2f} s · "
        f"first token {timings.get('first_token_s', 0):.2f} s · "
        f"total {timings.get('total_s', 0):.2f} s"
    )
    retrieved, citations = details["retrieved"], details["citations"]
    if not retrieved:
        return
    label = f"Sources ({len(citations)} cited, {len(retrieved)} retrieved)"
    with st.expander(label):
        if details.get("standalone_question"):  # a follow-up, rewritten to stand alone
            st.caption(plain(f"Searched as: {details['standalone_question']}"))
        by_number = {source["number"]: source for source in retrieved}
        for citation in citations:
            line = f"[{citation['number']}] {printable(label_of(citation))} · "
            line += f"similarity {citation['similarity']:.2f}"
            st.markdown(plain(line))
            st.caption(plain(citation["snippet"]))
            source = by_number[citation["number"]]
            root = details["roots"].get(str(citation["number"]), "")
            show_page(root, source["source"], source["page"], citation["snippet"])
        cited = {c["number"] for c in citations}
        uncited = [
            f"[{s['number']}] {printable(label_of(s))}"
            for s in retrieved
            if s["number"] not in cited
        ]
        if uncited:
            st.caption(plain(f"Also retrieved: {', '.join(uncited)}"))


def show_page(root: str, source: str, page: int | None, passage: str) -> None:
    """A cited PDF page as a picture, the passage marked, for the reader to check."""
    path = Path(root) / source
    if page is None or path.suffix.lower() != ".pdf":
        return
    try:
        picture = page_picture(str(path), path.stat().st_mtime_ns, page, passage)
    except (OSError, ValueError, RuntimeError):  # moved, changed or unreadable since ingest
        st.caption(plain(f"Page {page} cannot be shown: the file is gone or changed."))
        return
    st.image(picture)  # a caption of its own is rendered as markdown: the file name goes below
    where = source_label(source, page)
    st.caption(plain(f"{printable(where)}, the cited passage marked"))


@st.cache_data(max_entries=64, show_spinner=False)
def page_picture(path: str, mtime_ns: int, page: int, passage: str) -> bytes:
    """The rendered page as PNG bytes (cached: each rerun redraws every answer's sources)."""
    out = io.BytesIO()
    cited_page(Path(path), page, passage).image.save(out, "PNG")
    return out.getvalue()


def sidebar(services: Services) -> AskOptions:
    """Uploads, the document list, answer settings and what is in use; returns the options."""
    settings = services.settings
    with st.sidebar:
        conversations(services)
        chooser = st.container()  # drawn here, filled after the upload form below has run:
        # listing workspaces reads the store, which waits while another process writes

        st.subheader("Add documents")
        with st.form("upload", clear_on_submit=True):
            files = st.file_uploader(
                f"Up to {settings.ui.max_upload_mb} MB each",
                type=UPLOAD_TYPES,
                accept_multiple_files=True,
            )
            submitted = st.form_submit_button("Ingest", icon=":material/upload:")
        if submitted and files:
            ingest_uploads(services, files)
        with chooser:
            workspaces(services)

        st.subheader("Indexed documents")
        documents(services)

        st.subheader("Answer settings")
        choose_model(services)
        # The settings file may go past the usual ranges: the controls then reach that far.
        retrieval, llm = settings.retrieval, settings.llm
        options = AskOptions(
            k=st.slider("Chunks to retrieve (k)", 1, max(12, retrieval.k), retrieval.k),
            hybrid=st.toggle("Hybrid retrieval (keywords + meaning)", retrieval.hybrid),
            temperature=st.slider(
                "Temperature", 0.0, max(1.5, llm.temperature), llm.temperature, 0.05
            ),
            max_tokens=int(
                st.number_input("Max answer tokens", 1, max(2048, llm.max_tokens), llm.max_tokens)
            ),
        )
        st.subheader("In use")
        st.caption(plain(f"Model: {services.model_name()}"))
        st.caption(plain(f"Device: {services.device()}"))
        st.caption(plain(f"Store: {services.store_location()}"))
        with st.expander("Machine check (rag doctor)"):
            for line in services.checks.summary():
                st.caption(plain(line))
    return options


def conversations(services: Services) -> None:
    """A new chat, the workspace's chats newest first, and rename, export, delete for this one."""
    state: Any = st.session_state
    if st.button("New chat", icon=":material/add_comment:", use_container_width=True):
        state.conversation = None
        st.query_params.pop("chat", None)
    chats = services.conversations
    try:
        listed = chats.recent()
    except RagError as error:
        st.error(plain(f"Cannot read the conversations: {error}"), icon=":material/error:")
        return
    if not listed:
        return
    st.subheader("Chats")
    for shown in listed[:CHATS_LISTED]:
        current = shown.id == state.conversation
        if st.button(
            plain(shown.title),
            key=f"chat:{shown.id}",
            type="primary" if current else "tertiary",
            use_container_width=True,
        ):
            open_conversation(services, shown.id)
            st.rerun()
    if len(listed) > CHATS_LISTED:
        st.caption(f"and {len(listed) - CHATS_LISTED} older (`rag conversations` lists them)")
    current = next((c for c in listed if c.id == state.conversation), None)
    if current is None:
        return
    with st.expander("This chat"):
        try:
            title = st.text_input("Title", current.title, max_chars=TITLE_CHARS)
            if st.button("Rename", icon=":material/edit:", key="rename_chat") and title:
                chats.rename(current.id, title)
                st.rerun()
            st.download_button(
                "Export as Markdown",
                chats.export_markdown(current.id),
                file_name=f"chat-{current.id}.md",
                mime="text/markdown",
                icon=":material/download:",
            )
            sure = st.checkbox("Delete this chat", key="delete_chat_sure")
            if st.button("Delete", icon=":material/delete:", key="delete_chat", disabled=not sure):
                chats.delete(current.id)
                open_conversation(services, None)
                st.rerun()
        except RagError as error:
            st.error(plain(str(error)), icon=":material/error:")


def choose_model(services: Services) -> None:
    """The workspace's model, among the GGUF files found (remembered for the workspace)."""
    llm = services.model_settings
    if llm.backend != "llama_cpp":
        return  # a server's model is the server's: named under "In use"
    found = found_models(llm.model_dump_json())
    current = llm.llama_cpp.model_path or (found[0][0] if found else None)
    paths = [path for path, _ in found]
    if current not in paths or len(paths) < 2:
        return
    labels = dict(found)
    chosen = st.selectbox(
        "Model",
        paths,
        index=paths.index(current),
        format_func=lambda path: labels[path],
        help="GGUF files found in llm.model_dirs, the Hugging Face cache and LM Studio's "
        "folder (`rag models` lists them); one is in memory at a time",
    )
    if chosen != current:
        services.choose_model(chosen)
        st.rerun()


@st.cache_data(ttl=60, show_spinner=False)
def found_models(llm_json: str) -> list[tuple[Path, str]]:
    """(path, label) of every readable GGUF found; the folders are searched once a minute."""
    llm = LLMSettings.model_validate_json(llm_json)
    return [
        (
            f.path,
            f"{f.facts.name} · {f.facts.parameters_label} {f.facts.quantization} ({f.path.name})",
        )
        for f in find_models(llm)
        if f.facts is not None
    ]


def workspaces(services: Services) -> None:
    """Choose the workspace (a separate set of documents); create, rename or remove one."""
    names = services.workspaces.names()
    chosen = st.selectbox("Workspace", names, index=names.index(services.workspace))
    if chosen != services.workspace:
        switch_to(chosen)
    with st.expander("Manage workspaces"):
        try:
            new = st.text_input("New workspace", max_chars=40, key="new_workspace")
            if st.button("Create", icon=":material/add:") and new:
                services.workspaces.create(new.strip())
                switch_to(new.strip())
            if services.workspace == DEFAULT_WORKSPACE:
                return
            renamed = st.text_input(
                f"Rename {services.workspace} to", max_chars=40, key="workspace_name"
            )
            if st.button("Rename", icon=":material/edit:", key="rename_workspace") and renamed:
                services.workspaces.rename(services.workspace, renamed.strip())
                switch_to(renamed.strip())
            sure = st.checkbox(
                f"Remove {services.workspace} with its documents, uploads and chats",
                key="remove_workspace_sure",
            )
            if st.button(
                "Remove", icon=":material/delete:", key="remove_workspace", disabled=not sure
            ):
                services.workspaces.remove(services.workspace)
                switch_to(DEFAULT_WORKSPACE)
        except RagError as error:  # a bad or taken name, a store that fails
            st.error(plain(str(error)), icon=":material/error:")


def switch_to(workspace: str) -> None:
    """Show ``workspace`` from now on, with its last chat: chats do not cross workspaces."""
    st.session_state["workspace"] = workspace
    del st.session_state["conversation"]  # chosen again, in the new workspace
    st.query_params.clear()
    st.rerun()


def ingest_uploads(services: Services, files: list[Any]) -> None:
    """Save the uploads under the data folder and sync them into the store, with a summary."""
    progress = BarProgress()
    notice = st.empty()

    def waiting(reason: str) -> None:
        notice.info(plain(f"Waiting: {reason}…"), icon=":material/hourglass_top:")

    # An ingestor of its own: its progress bar is this session's.
    ingestor = services.pipeline.ingestor_reporting(progress)
    try:
        with services.store.telling(waiting):
            outcome = accept_uploads(
                services.pipeline, ((f.name, f.getvalue()) for f in files), ingestor
            )
    except RagError as error:
        st.error(plain(f"The ingest failed: {error}"), icon=":material/error:")
        return
    finally:
        progress.bar.empty()
        notice.empty()
    report, failed = outcome.report, outcome.failed
    summary = (
        f"Added {len(report.added)}, updated {len(report.updated)}, "
        f"unchanged {report.unchanged}, skipped {len(report.skipped)}, failed {len(failed)}."
    )
    (st.warning if failed else st.success)(plain(summary))
    for name, reason in failed:
        st.caption(plain(f"{Path(name).name}: {reason}"))
    for name, note in report.notes:
        st.caption(plain(f"{Path(name).name}: {note}"))
    for name, reason in report.skipped:
        st.caption(plain(f"{Path(name).name}: skipped: {reason}"))
    for name in outcome.replaced:
        st.caption(plain(f"{name}: replaced the earlier upload of that name"))


def documents(services: Services) -> None:
    """Every stored document with its chunk count, and a button to take it out (asks first)."""
    try:
        stored = list_documents(services.pipeline)
    except RagError as error:
        st.error(plain(f"Cannot list the documents: {error}"), icon=":material/error:")
        return
    if not stored:
        st.caption("Nothing indexed yet.")
        return
    state: Any = st.session_state
    for document in stored:
        root, source = document.root, document.source
        name, remove = st.columns([5, 1])
        name.markdown(plain(f"{printable(source)} · {document.size}"))
        if remove.button(
            "", icon=":material/delete:", key=f"remove:{root}:{source}", help="Remove"
        ):
            state.removing = (root, source)  # asked first: one click never deletes
            st.rerun()
        if getattr(state, "removing", None) != (root, source):
            continue
        st.warning(
            plain(f"Take {printable(source)} out of the index? An uploaded file is deleted too.")
        )
        sure, keep = st.columns(2)
        if keep.button("Keep it", key=f"keep:{root}:{source}"):
            del state.removing
            st.rerun()
        if sure.button("Remove it", key=f"confirm:{root}:{source}", type="primary"):
            del state.removing
            try:
                remove_document(services.pipeline, source, root)
            except (RagError, OSError) as error:
                st.error(plain(f"Cannot remove {source}: {error}"), icon=":material/error:")
                return
            st.rerun()


main()
