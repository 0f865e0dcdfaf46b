"""The status writes a user's request makes: a new job's ``queued`` row, and a cancel."""

from __future__ import annotations

import logging

from sqlalchemy import (
    update,
)
from sqlalchemy.orm import Session

from fitq.service.db.engine import rowcount
from fitq.service.db.models import (
    CANCELLED,
    EVENT_STATUS,
    QUEUED,
    RUNNING,
    Job,
    utcnow,
)
from fitq.service.queue.base import (
    event,
    notify_cancel,
    notify_new_job,
)

log = logging.getLogger("fitq.queue")


def enqueue(session: Session, job: Job) -> None:
    """Write a new job's ``queued`` row and the first entry of its status
    history, in the caller's transaction; idle workers hear of it when that
    commits. Raises ``IntegrityError`` (at the flush) when the row breaks a
    unique constraint (an ``Idempotency-Key`` already used)."""
    job.status = QUEUED
    session.add(job)
    session.flush()
    event(session, job.id, EVENT_STATUS, {"status": QUEUED, "attempt": 0}, at=job.created_at)
    notify_new_job(session)
    log.info("enqueued", extra={"action": "enqueue", "job_id": job.id})


def request_cancel(session: Session, job_id: str) -> None:
    """Cancel a queued job now; ask a running job's worker to stop (told at commit
    on PostgreSQL, ``queue.CANCEL_CHANNEL``), after which none of its epochs is
    recorded (``record_epoch``); leave a terminal job as it is (cancel is idempotent)."""
    now = utcnow()
    dequeued = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == QUEUED)
        .values(status=CANCELLED, cancel_requested=True, finished_at=now, updated_at=now)
        .returning(Job.attempt)
        .execution_options(synchronize_session=False)
    ).first()
    if dequeued is not None:
        event(session, job_id, EVENT_STATUS, {"status": CANCELLED, "attempt": dequeued.attempt})
    asked = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == RUNNING)
        .values(cancel_requested=True, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(asked):
        notify_cancel(session, job_id)
