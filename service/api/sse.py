"""Server-Sent Events from the ``job_events`` table, by polling.

Every durable event (a status change, a phase change, a finished epoch) is
a row of ``job_events`` written in the transaction of the change, so a
stream is a loop that reads the rows after the last one sent, every
``POLL_SECONDS``: it works the same on SQLite and PostgreSQL, across API
processes, and after a reconnect (``Last-Event-ID`` is the last row id the
client saw).

On the wire (``text/event-stream``)::

    retry: 2000

    id: 41
    event: epoch
    data: {"job_id": "…", "at": "…", "epoch": 3, "loss": 0.21, …}

    event: progress
    data: {"job_id": "…", "status": "running", "epoch": 4, "step": 12, …}

    : keep-alive

``progress`` snapshots (the step counter, which changes too often to be
stored as events) carry no ``id``: they never move a client's
``Last-Event-ID``, so a resume neither misses nor repeats a durable event.

Order. A job's events are written after the guarded UPDATE of its row, which
holds the row lock to the commit, so a job's ids commit in order. Across jobs
(the all-jobs stream) a transaction may commit a lower id after a higher one
was sent; the stream looks back over ids sent in the last ``SETTLE_SECONDS``
to pick such a late row up (each id is still sent once).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from fitq.service.db.models import TERMINAL_STATUSES, Job, JobEvent
from fitq.service.jobs import read

POLL_SECONDS = 0.25
"""How often a stream reads the table (seconds)."""
KEEPALIVE_SECONDS = 15.0
"""An idle stream sends a comment this often (seconds), so proxies keep it open."""
RETRY_MILLISECONDS = 2000
"""The reconnection delay the stream asks EventSource clients for."""
SETTLE_SECONDS = 2.0
"""How long after sending an id the stream still looks below it for late commits."""
BATCH = 500
"""Rows read per poll at most (a long backlog streams in batches)."""

MEDIA_TYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(frozen=True)
class Event:
    id: int
    job_id: str
    kind: str
    data: dict[str, Any]
    at: datetime

    def payload(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "at": self.at.isoformat(), **self.data}


@dataclass(frozen=True)
class Tick:
    """One poll: the job's state (job streams only), then the events after the cursor."""

    events: list[Event]
    progress: dict[str, Any] | None = None
    terminal: bool = False


def format_event(
    data: dict[str, Any], *, kind: str | None = None, event_id: int | None = None
) -> str:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if kind is not None:
        lines.append(f"event: {kind}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), default=str))
    return "\n".join(lines) + "\n\n"


def _events_after(session: Session, query: Any, after: int, skip: set[int]) -> list[Event]:
    rows = session.scalars(query.where(JobEvent.id > after).order_by(JobEvent.id).limit(BATCH))
    return [
        Event(row.id, row.job_id, row.kind, row.data, row.created_at)
        for row in rows
        if row.id not in skip
    ]


_JOB_WITH_TIMING = select(Job, read.MEAN_EPOCH_SECONDS, read.EPOCHS_DONE).where(
    Job.id == bindparam("job_id")
)


def job_reader(sessions: sessionmaker[Session], job_id: str) -> Callable[[int, set[int]], Tick]:
    """Polls of one job: its progress snapshot first, then its events.

    The job row is read before the events: when it is terminal, the terminal
    event committed with it and is in the events read after."""

    def poll(after: int, skip: set[int]) -> Tick:
        with sessions() as session:
            found = session.execute(_JOB_WITH_TIMING, {"job_id": job_id}).one_or_none()
            if found is None:  # deleted under the stream
                return Tick([], None, True)
            job, mean_epoch_seconds, epochs_done = found
            progress = read.progress(job, read.Timing.of(mean_epoch_seconds, epochs_done))
            query = select(JobEvent).where(JobEvent.job_id == job_id)
            events = _events_after(session, query, after, skip)
            terminal = job.status in TERMINAL_STATUSES and len(events) < BATCH
        return Tick(events, progress, terminal)

    return poll


def owner_reader(sessions: sessionmaker[Session], owner_id: str) -> Callable[[int, set[int]], Tick]:
    """Polls of every job of one owner (the stream never ends by itself)."""
    query = select(JobEvent).join(Job, Job.id == JobEvent.job_id).where(read.owned_by(owner_id))

    def poll(after: int, skip: set[int]) -> Tick:
        with sessions() as session:
            return Tick(_events_after(session, query, after, skip))

    return poll


@dataclass
class Cursor:
    """Where a stream is: every id at or below ``settled`` was sent (or will
    never be), ``recent`` holds the ids above it sent less than
    ``SETTLE_SECONDS`` ago, with the time each was sent."""

    settled: int
    recent: dict[int, float] = field(default_factory=dict)

    def sent(self, event_id: int, now: float) -> None:
        self.recent[event_id] = now

    def settle(self, now: float, settle_seconds: float) -> None:
        for event_id in sorted(self.recent):
            if now - self.recent[event_id] < settle_seconds:
                break
            self.settled = max(self.settled, event_id)
            del self.recent[event_id]


async def stream(
    read: Callable[[int, set[int]], Tick],
    after: int,
    *,
    poll_seconds: float = POLL_SECONDS,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
    settle_seconds: float = SETTLE_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[str]:
    """The SSE text of a stream that starts after event id ``after``; it ends
    after a poll that found its job terminal (job streams) or when the
    client goes away (the response cancels it)."""
    cursor = Cursor(after)
    last_progress: dict[str, Any] | None = None
    yield f"retry: {RETRY_MILLISECONDS}\n\n"
    last_sent = clock()
    while True:
        tick = await run_in_threadpool(read, cursor.settled, set(cursor.recent))
        now = clock()
        if tick.progress is not None and tick.progress != last_progress:
            last_progress = tick.progress
            yield format_event(tick.progress, kind="progress")
            last_sent = now
        for event in tick.events:
            yield format_event(event.payload(), kind=event.kind, event_id=event.id)
            cursor.sent(event.id, now)
            last_sent = now
        if tick.terminal:
            return
        cursor.settle(now, settle_seconds)
        if now - last_sent >= keepalive_seconds:
            yield ": keep-alive\n\n"
            last_sent = now
        if len(tick.events) < BATCH:
            await anyio.sleep(poll_seconds)


def nothing_left(session: Session, job: Job, after: int | None) -> bool:
    """A terminal job with no event after ``after`` (any, when None): its
    stream is answered 204, which tells an EventSource to stop reconnecting."""
    if job.status not in TERMINAL_STATUSES:
        return False
    later = session.scalar(
        select(JobEvent.id).where(JobEvent.job_id == job.id, JobEvent.id > (after or 0)).limit(1)
    )
    return later is None


def latest_id(session: Session) -> int:
    """The newest event id (0 for none): where a stream of "what comes next" starts."""
    return int(session.scalar(select(func.max(JobEvent.id))) or 0)
