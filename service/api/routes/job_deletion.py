"""DELETE /v1/jobs/{id}: a job that ended, its rows and its files."""

from __future__ import annotations

from fastapi import APIRouter, Response

from fitq.service.api.deps import JobDep, SessionDep, StoreDep
from fitq.service.api.errors import error_responses
from fitq.service.jobs import deletion

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.delete(
    "/{job_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(401, 404, 409),
)
def delete_job(job: JobDep, session: SessionDep, store: StoreDep) -> Response:
    """Delete a job that ended, with its History, events and files (409 while it is
    queued or running: cancel it first; for a sweep's trial, until the sweep ended)."""
    deletion.delete_job(session, store, job)
    return Response(status_code=204)
