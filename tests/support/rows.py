"""Jobs submitted through the API's own path and read back from the database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from fitq.service.db.engine import session_factory, transaction
from fitq.service.db.models import ExecutionLog, Job, JobEpoch
from fitq.service.jobs import submission


def submit(url: str, owner_id: str, spec: dict[str, Any]) -> str:
    """Queue ``spec`` through the API's own submission path (validation included)."""
    with transaction(url) as session:
        job, _ = submission.submit(session, owner_id, spec)
        return job.id


def job_row(url: str, job_id: str) -> Job:
    with session_factory(url)() as session:
        job = session.get(Job, job_id)
        assert job is not None, job_id
        return job


def job_rows(url: str, ids: list[str]) -> dict[str, Job]:
    """The rows of ``ids`` that exist, by id."""
    with session_factory(url)() as session:
        return {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(ids)))}


def epochs_of(url: str, job_id: str) -> list[int]:
    """The History rows of a job, in order (a duplicate would show twice)."""
    with session_factory(url)() as session:
        return list(
            session.scalars(
                select(JobEpoch.epoch).where(JobEpoch.job_id == job_id).order_by(JobEpoch.epoch)
            )
        )


def executions(url: str, ids: list[str]) -> int:
    """How many epoch runs the execution log holds for ``ids`` (re-runs included)."""
    with session_factory(url)() as session:
        return int(session.scalar(select(func.count()).where(ExecutionLog.job_id.in_(ids))) or 0)
