"""The one read model of a sweep: the owner check, and the shapes a reader sees.

A sweep's public shape (``SweepPublic``: its status and trial counts derived
from its trials' jobs, its best trial) is built by :func:`public` and nowhere
else, from the sweep row and the rows of its trials (:func:`trial_rows`, one
statement for a whole page of sweeps). A sweep has no status column: its
status is read off its trials, whose statuses only ``service/queue/`` writes.

- ``queued``: no trial has started; ``running``: one has, and not all ended;
- once every trial ended: ``succeeded`` when one succeeded, else ``cancelled``
  when one was cancelled, else ``failed``.

The trials of a sweep (``TrialPublic``) are listed best first by their value
(``ranking.ranked``: ties in trial order, trials without a value last).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session

from fitq.service import paging
from fitq.service.api.schemas import (
    BestTrial,
    SweepMetric,
    SweepPublic,
    TrialCounts,
    TrialPublic,
)
from fitq.service.db.models import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL_STATUSES,
    Job,
    Sweep,
    SweepTrial,
)
from fitq.service.errors import NotFound
from fitq.service.jobs import read as jobs_read
from fitq.service.paging import Page
from fitq.service.sweeps import ranking

# -- the owner check ------------------------------------------------------------


def owned(sweep_id: Any, owner_id: Any) -> ColumnElement[bool]:
    """The sweep ``sweep_id``, if ``owner_id`` owns it."""
    return and_(Sweep.id == sweep_id, Sweep.owner_id == owner_id)


def not_found(sweep_id: str) -> NotFound:
    return NotFound(f"no sweep with id {sweep_id!r}")


def get(session: Session, owner_id: str, sweep_id: str) -> Sweep:
    """The sweep ``sweep_id`` of ``owner_id``; another owner's is "not found", word for word."""
    sweep = session.scalar(select(Sweep).where(owned(sweep_id, owner_id)))
    if sweep is None:
        raise not_found(sweep_id)
    return sweep


def list_page(session: Session, owner_id: str, *, cursor: str | None, limit: int) -> Page[Sweep]:
    """The owner's sweeps, newest first (the cursor ``{"s": keyset}``)."""
    after = _keyset(cursor) if cursor else None
    query = select(Sweep).where(Sweep.owner_id == owner_id)
    rows, more = paging.newest_first(session, query, Sweep, after, limit)
    next_cursor = paging.encode_cursor({"s": paging.keyset_of(rows[-1])}) if more else None
    return Page(items=rows, next_cursor=next_cursor)


def _keyset(cursor: str) -> paging.Keyset:
    data = paging.decode_cursor(cursor)
    if not isinstance(data, dict) or "s" not in data:
        raise paging.bad_cursor()
    return paging.parse_keyset(data["s"])


# -- the rows a shape is built from -------------------------------------------------


def trial_rows(session: Session, sweep_ids: Sequence[str]) -> dict[str, list[Any]]:
    """Each sweep's trials in trial order, with their jobs' status, times and
    epochs done: one statement for all of ``sweep_ids``."""
    rows: dict[str, list[Any]] = defaultdict(list)
    if not sweep_ids:
        return rows
    for row in session.execute(
        select(
            SweepTrial.sweep_id,
            SweepTrial.job_id,
            SweepTrial.number,
            SweepTrial.params,
            SweepTrial.value,
            SweepTrial.pruned,
            Job.status,
            Job.started_at,
            Job.finished_at,
            jobs_read.EPOCHS_DONE,
        )
        .join(Job, Job.id == SweepTrial.job_id)
        .where(SweepTrial.sweep_id.in_(sweep_ids))
        .order_by(SweepTrial.sweep_id, SweepTrial.number)
    ):
        rows[row.sweep_id].append(row)
    return rows


# -- the shapes ---------------------------------------------------------------------


def public(sweep: Sweep, trials: Sequence[Any]) -> SweepPublic:
    """The sweep as the API shows it, from its row and its :func:`trial_rows`."""
    counts = Counter(t.status for t in trials)
    ended = sum(counts[s] for s in TERMINAL_STATUSES)
    maximize = sweep.goal == "maximize"
    succeeded = [t for t in trials if t.status == SUCCEEDED and t.value is not None]
    best = ranking.ranked(succeeded, lambda t: t.value, maximize=maximize)[:1]
    request = sweep.request
    started = any(t.started_at for t in trials)
    return SweepPublic(
        id=sweep.id,
        name=sweep.name,
        status=status_of(counts, total=len(trials), started=started),  # type: ignore[arg-type]
        metric=SweepMetric(name=sweep.metric, goal=sweep.goal),  # type: ignore[arg-type]
        trials=TrialCounts(
            total=len(trials),
            queued=counts[QUEUED],
            running=counts[RUNNING],
            succeeded=counts[SUCCEEDED],
            failed=counts[FAILED],
            cancelled=counts[CANCELLED],
        ),
        best=BestTrial(job_id=best[0].job_id, params=best[0].params, value=best[0].value)
        if best
        else None,
        method=request.get("method", "grid"),
        parameters=request.get("parameters", {}),
        early_terminate=request.get("early_terminate"),
        tags=list(sweep.tags or []),
        created_at=sweep.created_at,
        finished_at=max((t.finished_at for t in trials if t.finished_at), default=None)
        if trials and ended == len(trials)
        else None,
    )


def status_of(counts: Counter[str], *, total: int, started: bool) -> str:
    """A sweep's status from its trials' (see the module docstring)."""
    if sum(counts[s] for s in TERMINAL_STATUSES) < total:
        return RUNNING if started else QUEUED
    if counts[SUCCEEDED]:
        return SUCCEEDED
    return CANCELLED if counts[CANCELLED] else FAILED


def publics(session: Session, sweeps: Sequence[Sweep]) -> list[SweepPublic]:
    """Each of ``sweeps`` as the API shows it, in order (one statement for the trials)."""
    rows = trial_rows(session, [s.id for s in sweeps])
    return [public(sweep, rows.get(sweep.id, [])) for sweep in sweeps]


def trials_page(
    session: Session, sweep: Sweep, *, cursor: str | None, limit: int
) -> Page[TrialPublic]:
    """The sweep's trials best first (the cursor ``{"t": offset}`` into the
    ranking as it stands: trials still running may move between pages)."""
    offset = _offset(cursor) if cursor else 0
    rows = trial_rows(session, [sweep.id]).get(sweep.id, [])
    order = ranking.ranked(rows, lambda t: t.value, maximize=sweep.goal == "maximize")
    page = order[offset : offset + limit]
    more = offset + limit < len(order)
    return Page(
        items=[trial_public(t) for t in page],
        next_cursor=paging.encode_cursor({"t": offset + limit}) if more else None,
    )


def trial_public(row: Any) -> TrialPublic:
    return TrialPublic(
        job_id=row.job_id,
        number=row.number,
        params=row.params,
        status=row.status,
        value=row.value,
        epochs=int(row.epochs_done or 0),
        pruned=bool(row.pruned),
    )


def _offset(cursor: str) -> int:
    data = paging.decode_cursor(cursor)
    offset = data.get("t") if isinstance(data, dict) else None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise paging.bad_cursor()
    return offset
