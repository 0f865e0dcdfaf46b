"""Every write of a job's status (its first ``queued`` row included), and every
write a worker makes for a job.

Each function is one guarded statement. Worker writes are *fenced*: their
WHERE clause carries the job id, ``status = 'running'`` and the attempt the
worker was given when it claimed the job, so a worker whose attempt was
superseded (its lease expired and another worker took the job over) changes
nothing, and learns so through :class:`~service.errors.StaleAttempt`.

The claim is one UPDATE over a ``SELECT … FOR UPDATE SKIP LOCKED`` subquery on
PostgreSQL; on SQLite the same statement runs inside a ``BEGIN IMMEDIATE``
transaction, which serializes writers.

New work is announced with ``NOTIFY fitq_jobs`` on PostgreSQL (on enqueue, in
the submitting transaction, and on hand-back), so an idle worker listening on
that channel claims within milliseconds; polling remains the fallback, and the
only way on SQLite. The guarantees are written down in docs/reliability.md.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    String,
    and_,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session, aliased

from fitq.service import spec as specs
from fitq.service.db.engine import rowcount
from fitq.service.db.models import (
    CANCELLED,
    EVENT_EPOCH,
    EVENT_PHASE,
    EVENT_STATUS,
    FAILED,
    JOB_PHASES,
    LOADING_DATA,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TRAINING,
    ExecutionLog,
    Job,
    JobEpoch,
    JobEvent,
    utcnow,
)
from fitq.service.errors import StaleAttempt

log = logging.getLogger("fitq.queue")

NOTIFY_CHANNEL = "fitq_jobs"
"""The PostgreSQL channel that announces a job to claim (payload: empty)."""


@dataclass(frozen=True)
class Claim:
    """What a worker holds after a claim: the job and the attempt that fences its writes."""

    job_id: str
    attempt: int
    spec: dict[str, Any]
    checkpoint_key: str | None
    pack_key: str | None = None  # the jobs it may train with (None: it trains solo)
    isolated: bool = False  # a retry on its last attempt: it trains alone (_isolated)


def _event(
    session: Session, job_id: str, kind: str, data: dict[str, Any], at: datetime | None = None
) -> None:
    """What watchers of the job see (``GET /v1/jobs/{id}/events``), in the
    caller's transaction. Called after the guarded UPDATE, which holds the
    job's row lock to the commit, so a job's event ids follow its history."""
    session.execute(
        insert(JobEvent).values(job_id=job_id, kind=kind, data=data, created_at=at or utcnow())
    )


def enqueue(session: Session, job: Job) -> None:
    """Write a new job's ``queued`` row and the first entry of its status
    history, in the caller's transaction; idle workers hear of it when that
    commits. Raises ``IntegrityError`` (at the flush) when the row breaks a
    unique constraint (an ``Idempotency-Key`` already used)."""
    job.status = QUEUED
    session.add(job)
    session.flush()
    _event(session, job.id, EVENT_STATUS, {"status": QUEUED, "attempt": 0}, at=job.created_at)
    notify_new_job(session)
    log.info("enqueued", extra={"action": "enqueue", "job_id": job.id})


def _rescuable(now: datetime) -> Any:
    """A running job whose worker stopped heartbeating and that has attempts left."""
    return and_(
        Job.status == RUNNING,
        Job.lease_expires_at < now,
        Job.attempt < Job.max_attempts,
        Job.cancel_requested.is_(False),
    )


def _claimable(now: datetime) -> Any:
    return or_(Job.status == QUEUED, _rescuable(now))


def within_running_quota(limit: int | None) -> Any:
    """The jobs a claim may take as far as their owner's running-jobs quota goes
    (``FITQ_MAX_RUNNING_JOBS_PER_KEY``): a queued job whose owner has fewer than
    ``limit`` jobs running, and any rescue (that job is running already, so the
    count does not change). None: no quota. Both claims use it.

    Exact on SQLite (claims are serialized). On PostgreSQL each claim counts the
    running jobs committed before it, so claims of one key that race may take
    it past the limit by the claims in flight at that instant, and a pack claim
    checks each of its candidates against the count before the statement."""
    if limit is None:
        return true()
    running = aliased(Job)
    at_limit = (  # uncorrelated: computed once per statement, over the running rows only
        select(running.owner_id)
        .where(running.status == RUNNING)
        .group_by(running.owner_id)
        .having(func.count() >= limit)
    )
    return or_(Job.status != QUEUED, Job.owner_id.not_in(at_limit))


def claim(
    session: Session,
    worker_id: str,
    lease_seconds: float,
    *,
    device: str | None = None,
    now: datetime | None = None,
    max_running_per_key: int | None = None,
) -> Claim | None:
    """Take the highest-priority, oldest claimable job, or None when there is none;
    a queued job whose owner has ``max_running_per_key`` jobs running is skipped.

    The WHERE clause of the UPDATE repeats the claimable test, so a job that
    changed between the subquery and the update (a rescue racing a
    completion) is not taken.
    """
    now = now or utcnow()
    reap_expired(session, now)
    candidate = (
        select(Job.id)
        .where(_claimable(now), within_running_quota(max_running_per_key))
        .order_by(Job.priority.desc(), Job.created_at, Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    row = session.execute(
        update(Job)
        .where(Job.id == candidate, _claimable(now))
        .values(
            status=RUNNING,
            attempt=Job.attempt + 1,
            worker_id=worker_id,
            device=device,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=func.coalesce(Job.started_at, now),
            updated_at=now,
            pack_id=None,  # in no pack until a pack's worker says so (set_pack_size)
            pack_size=None,
        )
        .returning(*_CLAIMED)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        return None
    return _claimed(session, row)


_CLAIMED = (Job.id, Job.attempt, Job.spec, Job.checkpoint_key, Job.pack_key, Job.max_attempts)


def _isolated(attempt: Any, max_attempts: Any) -> Any:
    """Whether a claim for ``attempt`` retries a job on its last attempt. Such a claim
    trains alone, never in a pack: a job that kills its worker (a crash, the OOM
    killer) takes its packmates' attempts with it, and this keeps it from taking
    their last one. Works on columns and on plain ints."""
    return (attempt > 1) & (attempt >= max_attempts)


def _claimed(session: Session, row: Any) -> Claim:
    """The claim of a row just claimed, with its status event."""
    _event(session, row.id, EVENT_STATUS, {"status": RUNNING, "attempt": row.attempt})
    log.info("claimed", extra={"action": "claim", "job_id": row.id, "attempt": row.attempt})
    isolated = bool(_isolated(row.attempt, row.max_attempts))
    spec = specs.up_to_date(row.spec)  # queued before an upgrade: today's contract
    return Claim(row.id, row.attempt, spec, row.checkpoint_key, row.pack_key, isolated)


def claim_compatible(
    session: Session,
    worker_id: str,
    lease_seconds: float,
    *,
    pack_key: str,
    limit: int,
    pack_id: str,
    device: str | None = None,
    now: datetime | None = None,
    max_running_per_key: int | None = None,
) -> list[Claim]:
    """Take up to ``limit`` claimable jobs whose ``pack_key`` is ``pack_key`` (highest
    priority, oldest first) into the pack ``pack_id``, in one statement: each is
    claimed as :func:`claim` claims one (its own attempt incremented, lease, status
    event), and its ``pack_id`` set. The pack's worker writes their ``pack_size`` with
    :func:`set_pack_size` once it knows its members, in the same transaction. A job
    whose claim would be a retry on its last attempt is left to :func:`claim`, to
    train alone (:func:`_isolated`).

    The candidates are locked ``FOR UPDATE SKIP LOCKED`` (PostgreSQL), so concurrent
    packs never take the same job; the UPDATE repeats the claimable test, as
    :func:`claim`'s does. ``max_running_per_key``: :func:`within_running_quota`."""
    if limit < 1:
        return []
    now = now or utcnow()
    candidates = (
        select(Job.id)
        .where(Job.pack_key == pack_key, _claimable(now), within_running_quota(max_running_per_key))
        .order_by(Job.priority.desc(), Job.created_at, Job.id)
        .where(~_isolated(Job.attempt + 1, Job.max_attempts))
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("pack_candidates")
    )
    rows = session.execute(
        update(Job)
        .where(Job.id.in_(select(candidates.c.id)), Job.pack_key == pack_key, _claimable(now))
        .values(
            status=RUNNING,
            attempt=Job.attempt + 1,
            worker_id=worker_id,
            device=device,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=func.coalesce(Job.started_at, now),
            updated_at=now,
            pack_id=pack_id,
            pack_size=None,
        )
        .returning(*_CLAIMED, Job.priority, Job.created_at)
        .execution_options(synchronize_session=False)
    ).all()
    ordered = sorted(rows, key=lambda r: (-r.priority, r.created_at, r.id))
    return [_claimed(session, row) for row in ordered]


def set_pack_size(session: Session, pack_id: str, size: int, claims: Sequence[Claim]) -> set[str]:
    """Say that ``claims`` train in the pack ``pack_id`` of ``size`` members (after a
    member joined or left), in one statement fenced per claim; returns the jobs
    written (a claim whose attempt was superseded is left as it is)."""
    if not claims:
        return set()
    written = session.execute(
        update(Job)
        .where(Job.status == RUNNING, _any_attempt(claims))
        .values(pack_id=pack_id, pack_size=size)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).scalars()
    return set(written)


def _any_attempt(claims: Sequence[Claim]) -> Any:
    """The rows of these claims' attempts (their fence, without the status)."""
    return or_(*(and_(Job.id == c.job_id, Job.attempt == c.attempt) for c in claims))


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
        _event(session, row.id, EVENT_STATUS, {"status": CANCELLED, "attempt": row.attempt})
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
        _event(
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
            _rescuable(now),
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
        _event(session, job.id, EVENT_PHASE, {**loss, "worker_id": job.worker_id})
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
    _event(
        session, job.id, EVENT_STATUS, {"status": FAILED, "attempt": job.attempt, "error": error}
    )
    log.warning("lost early twice", extra={"action": "reap", "job_id": job.id})
    return 1


def notify_new_job(session: Session) -> None:
    """Announce claimable work to idle workers: a PostgreSQL ``NOTIFY``, sent
    when the caller's transaction commits (so never for a rolled-back insert);
    nothing on SQLite, whose workers poll."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_notify(NOTIFY_CHANNEL, "")))


def _fenced(job_id: str, attempt: int) -> Any:
    return and_(Job.id == job_id, Job.status == RUNNING, Job.attempt == attempt)


def _fenced_update(session: Session, job_id: str, attempt: int, **values: Any) -> None:
    values.setdefault("updated_at", utcnow())
    result = session.execute(
        update(Job)
        .where(_fenced(job_id, attempt))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) == 0:
        raise StaleAttempt(f"job {job_id} attempt {attempt} is no longer the running attempt")


def heartbeat(
    session: Session, job_id: str, attempt: int, lease_seconds: float, now: datetime | None = None
) -> bool:
    """Extend the lease; return whether a cancel was asked for."""
    now = now or utcnow()
    _fenced_update(
        session, job_id, attempt, lease_expires_at=now + timedelta(seconds=lease_seconds)
    )
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
        .where(Job.status == RUNNING, _any_attempt([b.claim for b in beats]))
        .values(**values)
        .returning(Job.id, Job.cancel_requested)
        .execution_options(synchronize_session=False)
    ).all()
    return {row.id: bool(row.cancel_requested) for row in rows}


def record_progress(
    session: Session, job_id: str, attempt: int, *, epoch: int, step: int, steps: int
) -> None:
    """The step counter the job resource shows (``epoch`` is the one in progress)."""
    _fenced_update(session, job_id, attempt, epoch=epoch, step=step, steps=steps)


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
    skips nor repeats an epoch."""
    _fenced_update(
        session,
        job_id,
        attempt,
        metrics=metrics,
        epoch=epoch,
        checkpoint_key=checkpoint_key,
    )
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
    _event(
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
    _fenced_update(session, job_id, attempt, phase=phase)
    _event(session, job_id, EVENT_PHASE, {"phase": phase, "attempt": attempt})


def record_checkpoint(session: Session, job_id: str, attempt: int, checkpoint_key: str) -> None:
    """A mid-epoch checkpoint became the one to resume from."""
    _fenced_update(session, job_id, attempt, checkpoint_key=checkpoint_key)


def finish(
    session: Session,
    job_id: str,
    attempt: int,
    *,
    model_key: str,
    test_metrics: dict[str, float] | None,
) -> None:
    now = utcnow()
    _fenced_update(
        session,
        job_id,
        attempt,
        status=SUCCEEDED,
        model_key=model_key,
        test_metrics=test_metrics,
        finished_at=now,
        lease_expires_at=None,
    )
    _event(
        session,
        job_id,
        EVENT_STATUS,
        {"status": SUCCEEDED, "attempt": attempt, "test_metrics": test_metrics},
    )


def fail(session: Session, job_id: str, attempt: int, error: str) -> None:
    _fenced_update(
        session,
        job_id,
        attempt,
        status=FAILED,
        error=error,
        finished_at=utcnow(),
        lease_expires_at=None,
    )
    _event(session, job_id, EVENT_STATUS, {"status": FAILED, "attempt": attempt, "error": error})


def acknowledge_cancel(session: Session, job_id: str, attempt: int) -> None:
    """The worker stopped a job whose cancel was asked for."""
    _fenced_update(
        session, job_id, attempt, status=CANCELLED, finished_at=utcnow(), lease_expires_at=None
    )
    _event(session, job_id, EVENT_STATUS, {"status": CANCELLED, "attempt": attempt})


def requeue(session: Session, job_id: str, attempt: int, *, solo: bool = False) -> None:
    """Hand a job back at once (worker shutdown): the next claim resumes it, and
    idle workers hear of it. A job whose cancel was asked meanwhile (after the
    worker's last heartbeat) ends ``cancelled`` instead. A queued job is in no
    pack; ``solo`` also clears its ``pack_key``, so it never trains in one again
    (a pack whose step failed hands its members back so)."""
    now = utcnow()
    cancelling = Job.cancel_requested.is_(True)
    unpacked = {"pack_key": None} if solo else {}
    _fenced_update(
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
    _event(session, job_id, EVENT_STATUS, {"status": status, "attempt": attempt})
    notify_new_job(session)


def request_cancel(session: Session, job_id: str) -> None:
    """Cancel a queued job now; ask a running job's worker to stop; leave a
    terminal job as it is (cancel is idempotent)."""
    now = utcnow()
    dequeued = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == QUEUED)
        .values(status=CANCELLED, cancel_requested=True, finished_at=now, updated_at=now)
        .returning(Job.attempt)
        .execution_options(synchronize_session=False)
    ).first()
    if dequeued is not None:
        _event(session, job_id, EVENT_STATUS, {"status": CANCELLED, "attempt": dequeued.attempt})
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == RUNNING)
        .values(cancel_requested=True, updated_at=now)
        .execution_options(synchronize_session=False)
    )
