"""``/v1/workspaces/{name}/documents``, ``.../sync`` and ``/v1/jobs``: a workspace's documents.

Uploads, the listing and removal go through :mod:`rag.library`, as the app's and the CLI's do.
A sync of a folder on the server's machine runs in the background; its state is kept as a file
under the data dir, so any worker of ``rag serve --workers N`` answers a poll for it. Limits:
uploads are held in memory up to ``ui.max_upload_mb`` each.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, UploadFile
from pydantic import BaseModel

from rag import library
from rag.api.common import workspace
from rag.ingest.ingestion import IngestReport, Progress
from rag.pipeline import Pipeline

router = APIRouter()


class SyncRequest(BaseModel):
    """A folder on the server's machine to keep the workspace in line with."""

    path: str


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


@router.get("/workspaces/{name}/documents")
def documents(name: str, request: Request) -> dict[str, Any]:
    """Every document of the workspace, with its chunk count."""
    return {
        "object": "list",
        "data": [asdict(document) for document in library.list_documents(workspace(request, name))],
    }


@router.post("/workspaces/{name}/documents")
def upload(name: str, files: list[UploadFile], request: Request) -> dict[str, Any]:
    """Store and ingest uploaded files, sanitized and size-limited as in the app."""
    pipeline = workspace(request, name)
    limit = pipeline.settings.ui.max_upload_mb * 2**20
    outcome = library.accept_uploads(
        pipeline,
        ((upload.filename or "upload", upload.file.read(limit + 1)) for upload in files),
    )
    return {
        **_report(outcome.report),
        "refused": [{"file": file, "reason": reason} for file, reason in outcome.refused],
        "replaced": outcome.replaced,
    }


@router.delete("/workspaces/{name}/documents/{source:path}")
def remove_document(
    name: str, source: str, request: Request, root: str | None = None
) -> dict[str, Any]:
    """Take a document out of the workspace (an uploaded file is deleted too)."""
    removed = library.remove_document(workspace(request, name), source, root)
    return {"source": source, "root": removed.root, "chunks_removed": removed.chunks}


@router.post("/workspaces/{name}/sync", status_code=202)
def sync(name: str, body: SyncRequest, request: Request) -> dict[str, Any]:
    """Start keeping the workspace in line with a folder on this machine; poll the job."""
    pipeline = workspace(request, name)
    folder = Path(body.path)
    if not folder.exists():
        raise HTTPException(400, f"no such file or folder on the server: {body.path}")
    return _job(request.app.state.jobs.start(pipeline, name, folder))


@router.get("/jobs/{job_id}")
def job_state(job_id: str, request: Request) -> dict[str, Any]:
    """How a background sync is going."""
    jobs: Jobs = request.app.state.jobs
    found = jobs.get(job_id)
    if found is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return found


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
