"""``rag serve``: the pipeline over HTTP, OpenAI-compatible, for scripts and other tools.

The app only includes the routers (:mod:`rag.api.chat`, :mod:`rag.api.workspaces`,
:mod:`rag.api.documents`) under ``/v1``, behind the key check, and turns every error into
OpenAI's shape with the status its type carries (``RagError.http_status``). With
``serve.api_key`` set, every ``/v1`` request needs it as a bearer token (401 without); the
server refuses to listen beyond loopback without one. ``rag serve --workers N`` runs N such
processes on one port (:func:`worker_app`), each with its own models and queue. Limits: a
worker's queue is its own (a busy worker answers 429 while another is idle).
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.api import chat, documents, workspaces
from rag.api.chat import Gate
from rag.api.common import authorized, error_response
from rag.api.documents import Jobs
from rag.errors import RagError
from rag.settings import Settings, load_settings
from rag.workspaces import Workspaces


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


def create_app(settings: Settings, served: Workspaces | None = None) -> FastAPI:
    """The API over the ``served`` workspaces (built from ``settings`` when not given)."""
    app = FastAPI(
        title="rag",
        summary="Answers from your own documents, OpenAI-compatible.",
        version="1",
    )
    app.state.workspaces = served or Workspaces(settings)
    app.state.api_key = settings.serve.api_key
    app.state.gate = Gate(settings.serve.max_queue)
    app.state.jobs = Jobs(settings.data_dir / "jobs")

    @app.exception_handler(RagError)
    async def ragerror_response(request: Request, error: RagError) -> JSONResponse:
        return error_response(error.http_status, str(error))

    @app.exception_handler(StarletteHTTPException)  # FastAPI's, and a route that is not there
    async def httperror_response(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail), error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'] if part != 'body') or 'body'}: "
            f"{problem['msg']}"
            for problem in error.errors()
        )
        return error_response(400, f"invalid request: {problems}")

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Whether the server is up, and which worker process answered (no key needed)."""
        return {"status": "ok", "worker": os.getpid()}

    for area in (chat, workspaces, documents):  # the key guards every /v1 route
        app.include_router(area.router, prefix="/v1", dependencies=[Depends(authorized)])
    return app
