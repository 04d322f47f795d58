"""``POST /v1/chat/completions``: answers from a workspace's documents, in OpenAI's shapes.

The model answers one request at a time (llama.cpp in process has one context): requests wait
their turn first come, first served (:class:`Gate`), and past ``serve.max_queue`` waiting the
server answers 429 with ``Retry-After``. A client that goes away mid-stream frees the model at
the next token. The streamed text is the checked answer, a sentence at a time: it always equals
the non-streamed answer, and the final event carries it whole as ``answer``, with what ``rag
ask --json`` prints beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from rag.answering.answer import Answer, AnswerStream, Turn
from rag.answering.answerer import AskOptions
from rag.api.common import error_response, workspace

router = APIRouter()


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


@router.post("/chat/completions", response_model=None)
async def chat(body: ChatRequest, request: Request) -> Any:
    """Answer the last user message from the workspace's documents."""
    pipeline = workspace(request, body.model)
    question, history = _conversation(body.messages)
    try:
        gate: Gate = request.app.state.gate
        ticket = gate.join()
    except Gate.Busy:
        return error_response(429, "the model is busy; try again shortly", {"Retry-After": "2"})
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
