"""``rag serve``: the pipeline over HTTP, OpenAI-compatible, for scripts and other tools.

``POST /v1/chat/completions`` answers from the documents of the workspace its ``model`` field
names (``GET /v1/models`` lists them), streaming (server-sent events) or not, in OpenAI's own
shapes, so the official clients and LangChain's ``ChatOpenAI`` work unchanged. The answer text
carries the ``[n]`` markers; ``citations`` and ``refused`` ride along as extra fields of the
response and of the final streamed event. Documents are uploaded, listed, removed and synced
through ``/v1/workspaces/{name}/...``; ``POST /v1/search`` returns the retrieved chunks.

The model answers one request at a time (llama.cpp in process has one context): requests
wait their turn first come, first served, and past ``serve.max_queue`` waiting the server
answers 429 with ``Retry-After`` instead of piling up. A client that goes away mid-stream
frees the model at the next token. With ``serve.api_key`` set, every ``/v1`` request needs it
as a bearer token (401 without); the server refuses to listen beyond loopback without one.

``rag serve --workers N`` runs N such processes on one port (``worker_app``), each with its
own models and queue; sync jobs are kept as files under the data dir, so any worker answers
for any job.

Limits: a worker's queue is its own (a busy worker answers 429 while another is idle);
uploads are held in memory up to ``ui.max_upload_mb`` each. The streamed text is the checked
answer, a sentence at a time (:class:`rag.answering.answerer.AnswerStream`): it always equals the
non-streamed answer, and the final event carries it whole as ``answer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag import library
from rag.answering.answer import Answer, AnswerStream, Turn
from rag.answering.answerer import AskOptions
from rag.errors import RagError
from rag.ingest.ingestion import IngestReport, Progress
from rag.pipeline import Pipeline
from rag.settings import Settings, load_settings
from rag.workspaces import Workspaces


class ChatMessage(BaseModel):
    """One message of an OpenAI chat request."""

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text, whether sent as a string or as content parts."""
        if isinstance(self.content, list):
            return " ".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """OpenAI's chat completion request; fields this server does not use are accepted."""

    model: str = Field(description="The workspace whose documents answer.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    k: int | None = Field(None, ge=1, le=50, description="Chunks retrieved (an extension).")

    model_config = {"extra": "allow"}


class SearchRequest(BaseModel):
    """A retrieval without an answer."""

    query: str = Field(min_length=1)
    model: str = Field("default", description="The workspace to search.")
    k: int | None = Field(None, ge=1, le=50)


class WorkspaceRequest(BaseModel):
    """A workspace to create, or a new name for one."""

    name: str


class SyncRequest(BaseModel):
    """A folder on the server's machine to keep the workspace in line with."""

    path: str


class Gate:
    """First come, first served turns at the model, with a bounded queue.

    A request takes a ticket (:meth:`join`, refused with ``Busy`` when ``limit`` already
    wait), waits for its turn (:meth:`wait`, which gives up when told to stop), and hands the
    model on (:meth:`leave`).
    """

    class Busy(Exception):
        """The queue is full."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._condition = threading.Condition()
        self._waiting: deque[int] = deque()
        self._tickets = itertools.count()
        self._busy = False

    def join(self) -> int:
        """A place in the queue."""
        with self._condition:
            # When the model is free, the first in the queue is about to take it, not waiting.
            if len(self._waiting) - (not self._busy) >= self.limit:
                raise Gate.Busy
            ticket = next(self._tickets)
            self._waiting.append(ticket)
            return ticket

    def wait(self, ticket: int, stop: threading.Event) -> bool:
        """Wait for ``ticket``'s turn; False (and the place given up) once ``stop`` is set."""
        with self._condition:
            while self._busy or self._waiting[0] != ticket:
                if stop.is_set():
                    self.abandon(ticket)
                    return False
                self._condition.wait(0.2)
            self._waiting.popleft()
            self._busy = True
            return True

    def abandon(self, ticket: int) -> None:
        """Give up a place before its turn came."""
        with self._condition:
            self._waiting.remove(ticket)
            self._condition.notify_all()

    def leave(self) -> None:
        """Give the model to the next request."""
        with self._condition:
            self._busy = False
            self._condition.notify_all()


class Generation:
    """One answer generated in a thread of its own once its turn comes, piece by piece.

    The event loop reads the pieces from a queue; :meth:`stop` (a client gone) ends the
    generation at the next piece. The thread itself closes the model's stream and hands the
    model on, so a request cancelled at any moment never keeps the model.
    """

    def __init__(self, stream: AnswerStream, gate: Gate, ticket: int) -> None:
        self.stream = stream
        self._gate = gate
        self._ticket = ticket
        self._stopped = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        threading.Thread(target=self._run, daemon=True).start()

    def stop(self) -> None:
        """Stop at the next piece (or before the turn comes)."""
        self._stopped.set()

    def _put(self, kind: str, value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is gone: nobody listens
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))

    def _run(self) -> None:
        if not self._gate.wait(self._ticket, self._stopped):
            return
        pieces = iter(self.stream)
        try:
            for piece in pieces:
                if self._stopped.is_set():
                    return
                self._put("piece", piece)
            self._put("done", self.stream.result())
        except Exception as error:  # delivered to the request, which answers with it
            self._put("error", error)
        finally:
            self.stream.close()  # the model's own stream lets go of llama.cpp
            self._gate.leave()

    async def next(self) -> tuple[str, Any]:
        """The next ("piece", text), ("done", answer) or ("error", exception)."""
        kind, value = await self._queue.get()
        if kind == "error":
            raise value
        return kind, value


@dataclass
class SyncJob:
    """A folder sync running in the background, as ``GET /v1/jobs/{id}`` shows it."""

    id: str
    workspace: str
    path: str
    state: Literal["running", "done", "failed"] = "running"
    files_total: int = 0
    files_done: int = 0
    chunks_total: int = 0
    chunks_done: int = 0
    error: str | None = None
    report: dict[str, Any] = field(default_factory=dict)


class Jobs:
    """Background syncs, each kept as a file under the data dir.

    Every worker process of the API (``rag serve --workers``) answers for every job: a
    client's next poll may reach another worker than the one running it. Job files older
    than a week are deleted when the API starts.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.json"):
            if time.time() - old.stat().st_mtime > _JOB_KEPT_S:
                old.unlink(missing_ok=True)

    def start(self, pipeline: Pipeline, name: str, folder: Path) -> SyncJob:
        """Sync ``folder`` into the workspace in a thread; the job as it starts."""
        job = SyncJob(uuid.uuid4().hex, name, str(folder))
        self.save(job)
        threading.Thread(target=self._run, args=(pipeline, folder, job), daemon=True).start()
        return job

    def _run(self, pipeline: Pipeline, folder: Path, job: SyncJob) -> None:
        try:
            report = pipeline.ingestor_reporting(_JobProgress(job, self)).sync([folder])
            job.report = _report(report)
            job.state = "done"
        except Exception as error:  # a job's failure is its state, for the poller to read
            job.error = f"{type(error).__name__}: {error}"
            job.state = "failed"
        self.save(job)

    def save(self, job: SyncJob) -> None:
        """Write the job's state where every worker reads it (whole, never half written)."""
        part = self.folder / f"{job.id}.{threading.get_ident()}.part"
        part.write_text(json.dumps(_job(job)))
        part.replace(self.folder / f"{job.id}.json")

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job's last saved state; None when there is no such job."""
        if not re.fullmatch(r"[0-9a-f]{32}", job_id):
            return None
        try:
            found: dict[str, Any] = json.loads((self.folder / f"{job_id}.json").read_text())
        except FileNotFoundError:
            return None
        return found


_JOB_KEPT_S = 7 * 24 * 3600


class _JobProgress(Progress):
    """Counts a job's progress; saves it at most twice a second."""

    def __init__(self, job: SyncJob, jobs: Jobs) -> None:
        self.job = job
        self.jobs = jobs
        self.saved = 0.0

    def _changed(self) -> None:
        if time.monotonic() - self.saved >= 0.5:
            self.saved = time.monotonic()
            self.jobs.save(self.job)

    def files_total(self, count: int) -> None:
        self.job.files_total = count
        self._changed()

    def file_done(self) -> None:
        self.job.files_done += 1
        self._changed()

    def chunks_total(self, count: int) -> None:
        self.job.chunks_total += count
        self._changed()

    def chunks_done(self, count: int) -> None:
        self.job.chunks_done += count
        self._changed()


def worker_app() -> FastAPI:
    """The API as each worker process of ``rag serve --workers N`` builds it.

    Settings come from the environment the command set (``RAG_SETTINGS_FILE``,
    ``RAG_DATA_DIR``); each worker loads its own models and opens the stores itself, which
    embedded stores allow (a file lock orders writers) and a Chroma server is made for.
    """
    settings = load_settings()
    served = Workspaces(settings)
    served.default.answerer.warm_up()
    app = create_app(settings, served)
    app.router.on_shutdown.append(served.close)
    return app


def create_app(settings: Settings, workspaces: Workspaces | None = None) -> FastAPI:
    """The API over ``workspaces`` (built from ``settings`` when not given)."""
    served = workspaces or Workspaces(settings)
    gate = Gate(settings.serve.max_queue)
    jobs = Jobs(settings.data_dir / "jobs")
    app = FastAPI(
        title="rag",
        summary="Answers from your own documents, OpenAI-compatible.",
        version="1",
    )
    app.state.workspaces = served
    app.state.api_key = settings.serve.api_key
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(_authorized)])  # the key guards it all

    def workspace(name: str) -> Pipeline:
        return served.get(name)

    @app.exception_handler(RagError)
    async def rag_error(request: Request, error: RagError) -> JSONResponse:
        return _error(error.http_status, str(error))

    @app.exception_handler(StarletteHTTPException)  # FastAPI's, and a route that is not there
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail), error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'] if part != 'body') or 'body'}: "
            f"{problem['msg']}"
            for problem in error.errors()
        )
        return _error(400, f"invalid request: {problems}")

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Whether the server is up, and which worker process answered (no key needed)."""
        return {"status": "ok", "worker": os.getpid()}

    @v1.get("/models")
    def models() -> dict[str, Any]:
        """The workspaces, as OpenAI lists models."""
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "rag"}
                for name in served.names()
            ],
        }

    @v1.post("/chat/completions", response_model=None)
    async def chat(body: ChatRequest, request: Request) -> Any:
        """Answer the last user message from the workspace's documents."""
        pipeline = workspace(body.model)
        question, history = _conversation(body.messages)
        try:
            ticket = gate.join()
        except Gate.Busy:
            return _error(429, "the model is busy; try again shortly", {"Retry-After": "2"})
        try:
            stream = await asyncio.to_thread(
                pipeline.answerer.stream,
                question,
                history,
                AskOptions(
                    k=body.k,
                    temperature=body.temperature,
                    max_tokens=body.max_completion_tokens or body.max_tokens,
                ),
            )
        except BaseException:
            gate.abandon(ticket)
            raise
        generation = Generation(stream, gate, ticket)
        completion = f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            return StreamingResponse(
                _events(completion, body.model, generation, request),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        try:
            while (next_piece := await generation.next())[0] == "piece":
                if await request.is_disconnected():
                    return None
        finally:
            generation.stop()
        return _completion(completion, body.model, next_piece[1])

    @v1.post("/search")
    def search(body: SearchRequest) -> dict[str, Any]:
        """The chunks retrieved for ``query``, best first, without an answer."""
        found = workspace(body.model).retriever.retrieve(body.query, body.k)
        return {
            "object": "list",
            "data": [
                {
                    "id": chunk.id,
                    "source": chunk.metadata.get("source"),
                    "page": chunk.metadata.get("page"),
                    "headings": chunk.metadata.get("headings") or None,
                    "similarity": round(chunk.similarity, 4),
                    "keyword_score": round(chunk.keyword_score, 4),
                    "text": chunk.text,
                }
                for chunk in found
            ],
        }

    @v1.post("/workspaces", status_code=201)
    def create_workspace(body: WorkspaceRequest) -> dict[str, str]:
        """A new, empty workspace."""
        served.create(body.name)
        return {"id": body.name, "object": "model"}

    @v1.patch("/workspaces/{name}")
    def rename_workspace(name: str, body: WorkspaceRequest) -> dict[str, str]:
        """Rename a workspace, with its documents."""
        served.rename(name, body.name)
        return {"id": body.name, "object": "model"}

    @v1.delete("/workspaces/{name}")
    def remove_workspace(name: str) -> dict[str, Any]:
        """Remove a workspace: its chunks, records and uploads, nothing else."""
        served.remove(name)
        return {"id": name, "deleted": True}

    @v1.get("/workspaces/{name}/documents")
    def documents(name: str) -> dict[str, Any]:
        """Every document of the workspace, with its chunk count."""
        return {
            "object": "list",
            "data": [asdict(document) for document in library.list_documents(workspace(name))],
        }

    @v1.post("/workspaces/{name}/documents")
    def upload(name: str, files: list[UploadFile]) -> dict[str, Any]:
        """Store and ingest uploaded files, sanitized and size-limited as in the app."""
        limit = settings.ui.max_upload_mb * 2**20
        outcome = library.accept_uploads(
            workspace(name),
            ((upload.filename or "upload", upload.file.read(limit + 1)) for upload in files),
        )
        return {
            **_report(outcome.report),
            "refused": [{"file": file, "reason": reason} for file, reason in outcome.refused],
            "replaced": outcome.replaced,
        }

    @v1.delete("/workspaces/{name}/documents/{source:path}")
    def remove_document(name: str, source: str, root: str | None = None) -> dict[str, Any]:
        """Take a document out of the workspace (an uploaded file is deleted too)."""
        removed = library.remove_document(workspace(name), source, root)
        return {"source": source, "root": removed.root, "chunks_removed": removed.chunks}

    @v1.post("/workspaces/{name}/sync", status_code=202)
    def sync(name: str, body: SyncRequest) -> dict[str, Any]:
        """Start keeping the workspace in line with a folder on this machine; poll the job."""
        pipeline = workspace(name)
        folder = Path(body.path)
        if not folder.exists():
            raise HTTPException(400, f"no such file or folder on the server: {body.path}")
        return _job(jobs.start(pipeline, name, folder))

    @v1.get("/jobs/{job_id}")
    def job_state(job_id: str) -> dict[str, Any]:
        """How a background sync is going."""
        found = jobs.get(job_id)
        if found is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return found

    app.include_router(v1)
    return app


_BEARER = HTTPBearer(auto_error=False)


def _authorized(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> None:
    """Every /v1 request carries the key, when the server has one (compared in constant time)."""
    key = request.app.state.api_key
    if key is None:
        return
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), key.get_secret_value().encode()):
        raise HTTPException(401, "a valid API key is needed", {"WWW-Authenticate": "Bearer"})


def _conversation(messages: list[ChatMessage]) -> tuple[str, list[Turn]]:
    """The question (the last user message) and the finished exchanges before it."""
    if messages[-1].role != "user" or not messages[-1].text().strip():
        raise HTTPException(400, "the last message must be the user's question")
    history: list[Turn] = []
    asked: str | None = None
    for message in messages[:-1]:
        if message.role == "user":
            asked = message.text()
        elif message.role == "assistant" and asked is not None:
            history.append(Turn(asked, message.text()))
            asked = None
    return messages[-1].text(), history


def _checked(answer: Answer) -> dict[str, Any]:
    """What travels beside the text: ``rag ask --json``'s shape (``Answer.to_json``).

    Less the question and the text, which the request and the message hold.
    """
    return {k: v for k, v in answer.to_json().items() if k not in ("question", "answer")}


def _completion(completion: str, model: str, answer: Answer) -> dict[str, Any]:
    """A whole chat completion in OpenAI's shape, with citations and refusal alongside."""
    return {
        "id": completion,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text},
                "finish_reason": "stop",
            }
        ],
        **_checked(answer),
    }


def _chunk(completion: str, model: str, delta: dict[str, Any], **extra: Any) -> str:
    event = {
        "id": completion,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": extra.pop("finish", None)}],
        **extra,
    }
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"


async def _events(
    completion: str, model: str, generation: Generation, request: Request
) -> AsyncIterator[str]:
    """The answer as server-sent events; a client gone stops the generation."""
    try:
        yield _chunk(completion, model, {"role": "assistant", "content": ""})
        while (next_piece := await generation.next())[0] == "piece":
            if await request.is_disconnected():
                return
            yield _chunk(completion, model, {"content": next_piece[1]})
        answer: Answer = next_piece[1]
        yield _chunk(
            completion,
            model,
            {},
            finish="stop",
            answer=answer.text,
            **_checked(answer),
        )
        yield "data: [DONE]\n\n"
    finally:
        generation.stop()  # synchronous: runs even when the response is cancelled


def _report(report: IngestReport) -> dict[str, Any]:
    return {
        "added": report.added,
        "updated": report.updated,
        "removed": report.removed,
        "unchanged": report.unchanged,
        "failed": [{"file": path, "reason": reason} for path, reason in report.failed],
        "skipped": [{"file": path, "reason": reason} for path, reason in report.skipped],
        "notes": [{"file": path, "note": note} for path, note in report.notes],
        "chunks_embedded": report.chunks_embedded,
    }


def _job(job: SyncJob) -> dict[str, Any]:
    return {"object": "job", **asdict(job)}


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An error in OpenAI's shape, which its clients turn into their typed errors."""
    kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}
    body = {"error": {"message": message, "type": kind.get(status, "server_error"), "code": status}}
    return JSONResponse(body, status, headers=headers)
