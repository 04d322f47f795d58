"""``/v1/models``, ``/v1/workspaces`` and ``/v1/search``: the workspaces, as OpenAI lists models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from rag.api.common import served, workspace

router = APIRouter()


class SearchRequest(BaseModel):
    """A retrieval without an answer."""

    query: str = Field(min_length=1)
    model: str = Field("default", description="The workspace to search.")
    k: int | None = Field(None, ge=1, le=50)


class WorkspaceRequest(BaseModel):
    """A workspace to create, or a new name for one."""

    name: str


@router.get("/models")
def models(request: Request) -> dict[str, Any]:
    """The workspaces, as OpenAI lists models."""
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "rag"}
            for name in served(request).names()
        ],
    }


@router.post("/search")
def search(body: SearchRequest, request: Request) -> dict[str, Any]:
    """The chunks retrieved for ``query``, best first, without an answer."""
    found = workspace(request, body.model).retriever.retrieve(body.query, body.k)
    return {
        "object": "list",
        "data": [
            {
                "id": chunk.id,
                "source": chunk.metadata.get("source"),
                "page": chunk.metadata.get("page"),
                "location": chunk.metadata.get("location"),
                "headings": chunk.metadata.get("headings") or None,
                "similarity": round(chunk.similarity, 4),
                "keyword_score": round(chunk.keyword_score, 4),
                "text": chunk.text,
            }
            for chunk in found
        ],
    }


@router.post("/workspaces", status_code=201)
def create_workspace(body: WorkspaceRequest, request: Request) -> dict[str, str]:
    """A new, empty workspace."""
    served(request).create(body.name)
    return {"id": body.name, "object": "model"}


@router.patch("/workspaces/{name}")
def rename_workspace(name: str, body: WorkspaceRequest, request: Request) -> dict[str, str]:
    """Rename a workspace, with its documents."""
    served(request).rename(name, body.name)
    return {"id": body.name, "object": "model"}


@router.delete("/workspaces/{name}")
def remove_workspace(name: str, request: Request) -> dict[str, Any]:
    """Remove a workspace: its chunks, records and uploads, nothing else."""
    served(request).remove(name)
    return {"id": name, "deleted": True}
