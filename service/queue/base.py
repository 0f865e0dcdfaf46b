"""What the queue's writes share: the claim a worker holds, the status event a
watcher sees, the fence of a worker's write, the NOTIFY that wakes idle workers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from fitq.service.db.engine import rowcount
from fitq.service.db.models import (
    RUNNING,
    Job,
    JobEvent,
    utcnow,
)
from fitq.service.errors import StaleAttempt

NOTIFY_CHANNEL = "fitq_jobs"
"""The PostgreSQL channel that announces a job to claim (payload: empty)."""
CANCEL_CHANNEL = "fitq_cancel"
"""The PostgreSQL channel that tells a running job's worker its cancel was asked
(payload: the job's id)."""


class CancelRequested(Exception):
    """The running attempt's job has a cancel asked: the write (an epoch's History
    row) is refused, and the worker acknowledges the cancel instead."""


@dataclass(frozen=True)
class Claim:
    """What a worker holds after a claim: the job and the attempt that fences its writes."""

    job_id: str
    attempt: int
    spec: dict[str, Any]
    checkpoint_key: str | None
    pack_key: str | None = None  # the jobs it may train with (None: it trains solo)
    isolated: bool = False  # a retry on its last attempt: it trains alone (_isolated)


def event(
    session: Session, job_id: str, kind: str, data: dict[str, Any], at: datetime | None = None
) -> None:
    """What watchers of the job see (``GET /v1/jobs/{id}/events``), in the
    caller's transaction. Called after the guarded UPDATE, which holds the
    job's row lock to the commit, so a job's event ids follow its history."""
    session.execute(
        insert(JobEvent).values(job_id=job_id, kind=kind, data=data, created_at=at or utcnow())
    )


def notify_new_job(session: Session) -> None:
    """Announce claimable work to idle workers: a PostgreSQL ``NOTIFY``, sent
    when the caller's transaction commits (so never for a rolled-back insert);
    nothing on SQLite, whose workers poll."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_notify(NOTIFY_CHANNEL, "")))


def notify_cancel(session: Session, job_id: str) -> None:
    """Tell the worker running ``job_id`` that its cancel was asked: a PostgreSQL
    ``NOTIFY`` sent when the caller's transaction commits; nothing on SQLite, whose
    workers poll their jobs' cancel flags."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_notify(CANCEL_CHANNEL, job_id)))


def fenced(job_id: str, attempt: int) -> Any:
    return and_(Job.id == job_id, Job.status == RUNNING, Job.attempt == attempt)


def fenced_update(session: Session, job_id: str, attempt: int, **values: Any) -> None:
    values.setdefault("updated_at", utcnow())
    result = session.execute(
        update(Job)
        .where(fenced(job_id, attempt))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) == 0:
        raise StaleAttempt(f"job {job_id} attempt {attempt} is no longer the running attempt")


def rescuable(now: datetime) -> Any:
    """A running job whose worker stopped heartbeating and that has attempts left."""
    return and_(
        Job.status == RUNNING,
        Job.lease_expires_at < now,
        Job.attempt < Job.max_attempts,
        Job.cancel_requested.is_(False),
    )


def any_attempt(claims: Sequence[Claim]) -> Any:
    """The rows of these claims' attempts (their fence, without the status)."""
    return or_(*(and_(Job.id == c.job_id, Job.attempt == c.attempt) for c in claims))
