"""The reaper: running jobs whose lease expired and that cannot be rescued end
(cancelled when asked, failed when their attempts are spent or they were lost early
twice), so a lost worker never leaves a job running."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import (
    String,
    and_,
    cast,
    exists,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from fitq.service.db.engine import rowcount
from fitq.service.db.models import (
    CANCELLED,
    EVENT_PHASE,
    EVENT_STATUS,
    FAILED,
    LOADING_DATA,
    RUNNING,
    TRAINING,
    ExecutionLog,
    Job,
    JobEvent,
    utcnow,
)
from fitq.service.queue.base import (
    event,
    rescuable,
)

log = logging.getLogger("fitq.queue")


LOST_EARLY_TIMES = 2
"""Attempts in a row lost before they ended an epoch, each on another worker and
outside a pack, after which a job is failed rather than rescued: a job whose
worker the kernel's OOM killer takes will take the next worker with it too."""


def reap_expired(session: Session, now: datetime | None = None) -> int:
    """End the running jobs whose lease expired and that cannot be rescued:
    cancelled when a cancel was asked, failed when their attempts are spent or
    when they keep killing their workers (:func:`_reap_lost_early`)."""
    now = now or utcnow()
    expired = and_(Job.status == RUNNING, Job.lease_expires_at < now)
    cancelled = session.execute(
        update(Job)
        .where(expired, Job.cancel_requested.is_(True))
        .values(status=CANCELLED, finished_at=now, updated_at=now, lease_expires_at=None)
        .returning(Job.id, Job.attempt)
        .execution_options(synchronize_session=False)
    ).all()
    for row in cancelled:
        event(session, row.id, EVENT_STATUS, {"status": CANCELLED, "attempt": row.attempt})
    lost = session.execute(
        update(Job)
        .where(expired, Job.attempt >= Job.max_attempts)
        .values(
            status=FAILED,
            error=literal("worker lost on attempts 1–", String) + cast(Job.attempt, String),
            finished_at=now,
            updated_at=now,
            lease_expires_at=None,
        )
        .returning(Job.id, Job.attempt, Job.error)
        .execution_options(synchronize_session=False)
    ).all()
    for gone in lost:
        event(
            session,
            gone.id,
            EVENT_STATUS,
            {"status": FAILED, "attempt": gone.attempt, "error": gone.error},
        )
    return len(cancelled) + len(lost) + _reap_lost_early(session, now)


def _reap_lost_early(session: Session, now: datetime) -> int:
    """Note each rescuable attempt that was lost early, and fail a job lost early
    ``LOST_EARLY_TIMES`` in a row on different workers; return how many failed.

    Lost early: its lease expired while it was loading data or training, before
    it ended an epoch (no execution-log row of the attempt), alone on its worker
    (not in a pack of several, where another member may be to blame). That is
    where memory runs out: data and weights are placed and the first steps
    allocate the activations, after which the engine allocates nothing more. A
    worker whose database went away outlives its lease too, so a loss counts
    only on another worker than the one before. Each loss is noted as a phase
    event of its attempt (``"lost": true`` and the worker), which the next
    reap reads back; the rows are locked (SKIP LOCKED) so concurrent claims
    note each loss once."""
    in_pack = and_(Job.pack_size.is_not(None), Job.pack_size > 1)
    candidates = session.execute(
        select(Job.id, Job.attempt, Job.worker_id, Job.phase)
        .where(
            rescuable(now),
            or_(Job.phase.is_(None), Job.phase.in_((LOADING_DATA, TRAINING))),
            ~in_pack,
            ~exists().where(ExecutionLog.job_id == Job.id, ExecutionLog.attempt == Job.attempt),
        )
        .with_for_update(skip_locked=True)
    ).all()
    failed = 0
    for job in candidates:
        noted = {
            data.get("attempt"): data
            for data in session.scalars(
                select(JobEvent.data).where(JobEvent.job_id == job.id, JobEvent.kind == EVENT_PHASE)
            )
            if data.get("lost")
        }
        if job.attempt in noted:
            continue  # an earlier reap saw this loss; the job waits for a claim
        times, worker = 1, job.worker_id  # this loss, and the noted ones just before it
        while times < LOST_EARLY_TIMES:
            before = noted.get(job.attempt - times)
            if before is None or before.get("worker_id") == worker:
                break
            times, worker = times + 1, before.get("worker_id")
        if times >= LOST_EARLY_TIMES:
            failed += _fail_lost_early(session, job, times, now)
            continue
        loss = {"phase": job.phase or LOADING_DATA, "attempt": job.attempt, "lost": True}
        event(session, job.id, EVENT_PHASE, {**loss, "worker_id": job.worker_id})
    return failed


def _fail_lost_early(session: Session, job: Any, times: int, now: datetime) -> int:
    first = job.attempt - times + 1
    error = (
        f"worker lost, likely out of memory: attempts {first}–{job.attempt} each "
        "ended with their worker before an epoch did, on different workers, so the job is "
        "not retried; use fewer or narrower layers or a smaller batch_size"
    )
    result = session.execute(
        update(Job)
        .where(
            Job.id == job.id,
            Job.status == RUNNING,
            Job.attempt == job.attempt,
            Job.lease_expires_at < now,
        )
        .values(status=FAILED, error=error, finished_at=now, updated_at=now, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) == 0:
        return 0
    event(session, job.id, EVENT_STATUS, {"status": FAILED, "attempt": job.attempt, "error": error})
    log.warning("lost early twice", extra={"action": "reap", "job_id": job.id})
    return 1
