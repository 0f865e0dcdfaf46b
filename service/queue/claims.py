"""Claims: a worker takes the highest-priority, oldest claimable job (one
``FOR UPDATE SKIP LOCKED`` statement), or a pack of compatible ones, each with its
own attempt; the pack's size as members join and leave."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session, aliased

from fitq.service import spec as specs
from fitq.service.db.models import (
    EVENT_STATUS,
    QUEUED,
    RUNNING,
    Job,
    utcnow,
)
from fitq.service.queue.base import (
    Claim,
    any_attempt,
    event,
    rescuable,
)
from fitq.service.queue.reaping import reap_expired

log = logging.getLogger("fitq.queue")


def _claimable(now: datetime) -> Any:
    return or_(Job.status == QUEUED, rescuable(now))


def within_running_quota(limit: int | None) -> Any:
    """The jobs a claim may take as far as their owner's running-jobs quota goes
    (``FITQ_MAX_RUNNING_JOBS_PER_KEY``): a queued job whose owner has fewer than
    ``limit`` jobs running, and any rescue (that job is running already, so the
    count does not change). None: no quota. Both claims use it.

    Exact on SQLite (claims are serialized). On PostgreSQL each claim counts the
    running jobs committed before it, so claims of one key that race may take
    it past the limit by the claims in flight at that instant. A pack claim also
    counts the members it takes (:func:`_within_quota`)."""
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
        .order_by(*CLAIM_ORDER)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    row = session.execute(
        update(Job)
        .where(Job.id == candidate, _claimable(now))
        .values(_taken(worker_id, device, now, lease_seconds, pack_id=None))
        .returning(*_CLAIMED)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        return None
    return _claimed(session, row)


CLAIM_ORDER = (Job.priority.desc(), Job.created_at, Job.id)
"""Highest priority first, then oldest: the order both claims take jobs in."""


def _taken(
    worker_id: str, device: str | None, now: datetime, lease_seconds: float, *, pack_id: str | None
) -> dict[str, Any]:
    """The columns a claim writes: running, the next attempt, a lease; in the pack
    ``pack_id`` (a solo claim: in none until a pack's worker says so, ``set_pack_size``)."""
    return {
        "status": RUNNING,
        "attempt": Job.attempt + 1,
        "worker_id": worker_id,
        "device": device,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
        "started_at": func.coalesce(Job.started_at, now),
        "updated_at": now,
        "pack_id": pack_id,
        "pack_size": None,
    }


_CLAIMED = (Job.id, Job.attempt, Job.spec, Job.checkpoint_key, Job.pack_key, Job.max_attempts)


def _isolated(attempt: Any, max_attempts: Any) -> Any:
    """Whether a claim for ``attempt`` retries a job on its last attempt. Such a claim
    trains alone, never in a pack: a job that kills its worker (a crash, the OOM
    killer) takes its packmates' attempts with it, and this keeps it from taking
    their last one. Works on columns and on plain ints."""
    return (attempt > 1) & (attempt >= max_attempts)


def _claimed(session: Session, row: Any) -> Claim:
    """The claim of a row just claimed, with its status event."""
    event(session, row.id, EVENT_STATUS, {"status": RUNNING, "attempt": row.attempt})
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
    priority, oldest first) into the pack ``pack_id``: each is
    claimed as :func:`claim` claims one (its own attempt incremented, lease, status
    event), and its ``pack_id`` set. The pack's worker writes their ``pack_size`` with
    :func:`set_pack_size` once it knows its members, in the same transaction. A job
    whose claim would be a retry on its last attempt is left to :func:`claim`, to
    train alone (:func:`_isolated`).

    The candidates are locked ``FOR UPDATE SKIP LOCKED`` (PostgreSQL), so concurrent
    packs never take the same job; the UPDATE repeats the claimable test, as
    :func:`claim`'s does. ``max_running_per_key``: :func:`within_running_quota`,
    and no key past it by this pack's own members (:func:`_within_quota`)."""
    if limit < 1:
        return []
    now = now or utcnow()
    lookahead = limit if max_running_per_key is None else limit * QUOTA_LOOKAHEAD
    candidates = session.execute(
        select(Job.id, Job.owner_id, Job.status)
        .where(Job.pack_key == pack_key, _claimable(now), within_running_quota(max_running_per_key))
        .order_by(*CLAIM_ORDER)
        .where(~_isolated(Job.attempt + 1, Job.max_attempts))
        .limit(lookahead)
        .with_for_update(skip_locked=True)
    ).all()
    taken = _within_quota(session, candidates, limit, max_running_per_key)
    if not taken:
        return []
    rows = session.execute(
        update(Job)
        .where(Job.id.in_(taken), Job.pack_key == pack_key, _claimable(now))
        .values(_taken(worker_id, device, now, lease_seconds, pack_id=pack_id))
        .returning(*_CLAIMED, Job.priority, Job.created_at)
        .execution_options(synchronize_session=False)
    ).all()
    ordered = sorted(rows, key=lambda r: (-r.priority, r.created_at, r.id))
    return [_claimed(session, row) for row in ordered]


QUOTA_LOOKAHEAD = 4
"""A pack claim under a running-jobs quota looks at this many times ``limit``
candidates, so that one key's queue at its limit leaves room for other keys'."""


def _within_quota(
    session: Session, candidates: Sequence[Any], limit: int, quota: int | None
) -> list[str]:
    """The first ``limit`` of ``candidates`` (locked rows, in claim order) that keep
    each key within ``quota`` running jobs, counting the ones taken before them; a
    rescue (a running job) is always taken and changes no count."""
    if quota is None:
        return [c.id for c in candidates[:limit]]
    owners = {c.owner_id for c in candidates if c.status == QUEUED}
    running: dict[str, int] = dict(
        session.execute(  # type: ignore[arg-type]
            select(Job.owner_id, func.count())
            .where(Job.status == RUNNING, Job.owner_id.in_(owners))
            .group_by(Job.owner_id)
        ).all()
    )
    taken: list[str] = []
    for candidate in candidates:
        if candidate.status == QUEUED:
            if running.get(candidate.owner_id, 0) >= quota:
                continue
            running[candidate.owner_id] = running.get(candidate.owner_id, 0) + 1
        taken.append(candidate.id)
        if len(taken) == limit:
            break
    return taken


def set_pack_size(session: Session, pack_id: str, size: int, claims: Sequence[Claim]) -> set[str]:
    """Say that ``claims`` train in the pack ``pack_id`` of ``size`` members (after a
    member joined or left), in one statement fenced per claim; returns the jobs
    written (a claim whose attempt was superseded is left as it is)."""
    if not claims:
        return set()
    written = session.execute(
        update(Job)
        .where(Job.status == RUNNING, any_attempt(claims))
        .values(pack_id=pack_id, pack_size=size)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).scalars()
    return set(written)
