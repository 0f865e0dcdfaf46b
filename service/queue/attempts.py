"""The writes a worker makes for the attempt it holds, each fenced by the attempt:
heartbeats, progress, History rows, phases, checkpoints, and the ends (finish, fail,
cancel acknowledged, hand-back)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    case,
    exists,
    func,
    insert,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.orm import Session

from fitq.service.db.engine import rowcount
from fitq.service.db.models import (
    CANCELLED,
    EVENT_EPOCH,
    EVENT_PHASE,
    EVENT_STATUS,
    FAILED,
    JOB_PHASES,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    ExecutionLog,
    Job,
    JobEpoch,
    JobEvent,
    utcnow,
)
from fitq.service.errors import StaleAttempt
from fitq.service.queue.base import (
    CancelRequested,
    Claim,
    any_attempt,
    event,
    fenced,
    fenced_update,
    notify_new_job,
)


def heartbeat(
    session: Session, job_id: str, attempt: int, lease_seconds: float, now: datetime | None = None
) -> bool:
    """Extend the lease; return whether a cancel was asked for."""
    now = now or utcnow()
    fenced_update(session, job_id, attempt, lease_expires_at=now + timedelta(seconds=lease_seconds))
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


@dataclass(frozen=True)
class Beat:
    """One claim's part of :func:`heartbeat_claims`: its progress to write (epoch in
    progress, step, steps), or None when it has not moved since the last beat."""

    claim: Claim
    progress: tuple[int, int, int] | None = None


def heartbeat_claims(
    session: Session, beats: Sequence[Beat], lease_seconds: float, now: datetime | None = None
) -> dict[str, bool]:
    """Extend the lease of every beat's attempt and write its progress, in one
    statement; return, for each attempt that is still the running one, whether a
    cancel was asked. A job missing from the answer is no longer this attempt's
    (its lease went to another worker, or it ended)."""
    if not beats:
        return {}
    now = now or utcnow()
    values: dict[str, Any] = {
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
        "updated_at": now,
    }
    moved = [b for b in beats if b.progress is not None]
    if moved:
        for i, column in enumerate(("epoch", "step", "steps")):
            whens = {b.claim.job_id: b.progress[i] for b in moved}  # type: ignore[index]
            values[column] = case(whens, value=Job.id, else_=getattr(Job, column))
    rows = session.execute(
        update(Job)
        .where(Job.status == RUNNING, any_attempt([b.claim for b in beats]))
        .values(**values)
        .returning(Job.id, Job.cancel_requested)
        .execution_options(synchronize_session=False)
    ).all()
    return {row.id: bool(row.cancel_requested) for row in rows}


def record_progress(
    session: Session, job_id: str, attempt: int, *, epoch: int, step: int, steps: int
) -> None:
    """The step counter the job resource shows (``epoch`` is the one in progress)."""
    fenced_update(session, job_id, attempt, epoch=epoch, step=step, steps=steps)


def log_execution(session: Session, job_id: str, attempt: int, epoch: int, worker_id: str) -> None:
    """Note that ``worker_id`` ran ``epoch`` of ``attempt``. Not fenced, and meant
    for its own transaction *before* the fenced :func:`record_epoch`, so that a
    superseded attempt's run stays visible though its metrics are refused."""
    session.execute(
        insert(ExecutionLog).values(
            job_id=job_id, attempt=attempt, epoch=epoch, worker_id=worker_id, created_at=utcnow()
        )
    )


def record_epoch(
    session: Session,
    job_id: str,
    attempt: int,
    *,
    epoch: int,
    metrics: dict[str, float],
    seconds: float,
    samples_per_second: float,
    checkpoint_key: str | None,
) -> None:
    """One finished epoch: its History row, the latest metrics and the checkpoint
    that ends it, in the caller's one transaction, so a resumed run neither
    skips nor repeats an epoch.

    Refused once the job's cancel is asked (``CancelRequested``; the worker then
    acknowledges it): the UPDATE is guarded by ``NOT cancel_requested``, so no
    History row follows a committed cancel (on PostgreSQL a cancel that commits
    first makes this UPDATE match nothing; one that comes second waits for it)."""
    written = session.execute(
        update(Job)
        .where(fenced(job_id, attempt), Job.cancel_requested.is_(False))
        .values(metrics=metrics, epoch=epoch, checkpoint_key=checkpoint_key, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if rowcount(written) == 0:
        cancelled = session.scalar(select(Job.cancel_requested).where(fenced(job_id, attempt)))
        if cancelled:
            raise CancelRequested(f"job {job_id}: cancel asked, epoch {epoch} not recorded")
        raise StaleAttempt(f"job {job_id} attempt {attempt} is no longer the running attempt")
    already = session.scalar(
        select(exists().where(JobEpoch.job_id == job_id, JobEpoch.epoch == epoch))
    )
    if already:
        # A resumed attempt re-ran an epoch whose row a lost attempt had written
        # after its last checkpoint; the rows are equal (deterministic), keep the first.
        return
    session.execute(
        insert(JobEpoch).values(
            job_id=job_id,
            epoch=epoch,
            attempt=attempt,
            metrics=metrics,
            seconds=seconds,
            samples_per_second=samples_per_second,
            created_at=utcnow(),
        )
    )
    event(
        session,
        job_id,
        EVENT_EPOCH,
        {
            "epoch": epoch,
            "attempt": attempt,
            **metrics,
            "seconds": seconds,
            "samples_per_second": samples_per_second,
        },
    )


def record_phase(session: Session, job_id: str, attempt: int, phase: str) -> None:
    """The running attempt moved on to ``phase`` (one of ``JOB_PHASES``)."""
    if phase not in JOB_PHASES:
        raise ValueError(f"unknown phase {phase!r}; expected one of {JOB_PHASES}")
    fenced_update(session, job_id, attempt, phase=phase)
    event(session, job_id, EVENT_PHASE, {"phase": phase, "attempt": attempt})


def record_checkpoint(session: Session, job_id: str, attempt: int, checkpoint_key: str) -> None:
    """A mid-epoch checkpoint became the one to resume from."""
    fenced_update(session, job_id, attempt, checkpoint_key=checkpoint_key)


def finish(
    session: Session,
    job_id: str,
    attempt: int,
    *,
    model_key: str,
    test_metrics: dict[str, float] | None,
) -> None:
    now = utcnow()
    fenced_update(
        session,
        job_id,
        attempt,
        status=SUCCEEDED,
        model_key=model_key,
        test_metrics=test_metrics,
        finished_at=now,
        lease_expires_at=None,
    )
    event(
        session,
        job_id,
        EVENT_STATUS,
        {"status": SUCCEEDED, "attempt": attempt, "test_metrics": test_metrics},
    )


def fail(session: Session, job_id: str, attempt: int, error: str) -> None:
    fenced_update(
        session,
        job_id,
        attempt,
        status=FAILED,
        error=error,
        finished_at=utcnow(),
        lease_expires_at=None,
    )
    event(session, job_id, EVENT_STATUS, {"status": FAILED, "attempt": attempt, "error": error})


def acknowledge_cancel(session: Session, job_id: str, attempt: int) -> None:
    """The worker stopped a job whose cancel was asked for."""
    fenced_update(
        session, job_id, attempt, status=CANCELLED, finished_at=utcnow(), lease_expires_at=None
    )
    event(session, job_id, EVENT_STATUS, {"status": CANCELLED, "attempt": attempt})


def requeue(
    session: Session,
    job_id: str,
    attempt: int,
    *,
    solo: bool = False,
    store_error: str | None = None,
) -> None:
    """Hand a job back at once (worker shutdown): the next claim resumes it, and
    idle workers hear of it. A job whose cancel was asked meanwhile (after the
    worker's last heartbeat) ends ``cancelled`` instead. A queued job is in no
    pack; ``solo`` also clears its ``pack_key``, so it never trains in one again
    (a pack whose step failed hands its members back so). ``store_error``: the
    artifact store failed under the attempt (no path in it); the status event
    carries it as its ``error``, with ``"reason": "store"`` (:func:`store_failures`)."""
    now = utcnow()
    cancelling = Job.cancel_requested.is_(True)
    unpacked = {"pack_key": None} if solo else {}
    fenced_update(
        session,
        job_id,
        attempt,
        status=case((cancelling, CANCELLED), else_=QUEUED),
        finished_at=case((cancelling, literal(now, Job.finished_at.type)), else_=null()),
        worker_id=None,
        lease_expires_at=None,
        updated_at=now,
        pack_id=None,
        pack_size=None,
        **unpacked,
    )
    status = session.scalar(select(Job.status).where(Job.id == job_id))
    data: dict[str, Any] = {"status": status, "attempt": attempt}
    if store_error is not None and status == QUEUED:
        data.update(error=store_error, reason=STORE_REASON)
    event(session, job_id, EVENT_STATUS, data)
    notify_new_job(session)


STORE_REASON = "store"
"""A hand-back's status event's ``reason`` when the artifact store failed under it."""


def store_failures(session: Session, job_id: str) -> int:
    """How many times in a row the job went back for the artifact store: its
    hand-backs for the store since its last recorded epoch."""
    last_epoch = session.scalar(
        select(func.max(JobEvent.id)).where(JobEvent.job_id == job_id, JobEvent.kind == EVENT_EPOCH)
    )
    since = session.scalars(
        select(JobEvent.data).where(
            JobEvent.job_id == job_id,
            JobEvent.kind == EVENT_STATUS,
            JobEvent.id > (last_epoch or 0),
        )
    )
    return sum(1 for data in since if data.get("reason") == STORE_REASON)
