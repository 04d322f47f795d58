"""What the API's routers share: the served workspaces, the key check, errors in OpenAI's shape."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Annotated, cast

from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rag.pipeline import Pipeline
from rag.workspaces import Workspaces


def served(request: Request) -> Workspaces:
    """The workspaces this server answers for."""
    return cast(Workspaces, request.app.state.workspaces)


def workspace(request: Request, name: str) -> Pipeline:
    """The pipeline of workspace ``name`` (a NoWorkspaceError, 404, when there is none)."""
    return served(request).get(name)


_BEARER = HTTPBearer(auto_error=False)


def authorized(
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


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An error in OpenAI's shape, which its clients turn into their typed errors."""
    kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}
    body = {"error": {"message": message, "type": kind.get(status, "server_error"), "code": status}}
    return JSONResponse(body, status, headers=headers)
