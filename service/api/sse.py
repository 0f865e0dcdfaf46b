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

Fair use. A stream holds a slot of its API process for as long as it is open:
at most ``FITQ_MAX_STREAMS`` in all and ``FITQ_MAX_STREAMS_PER_KEY`` per key
(:class:`StreamSlots`); past them a new stream is a 429 with ``Retry-After``.
Polls read without a transaction (``db.engine.reading``: no SQLite write lock,
no BEGIN on PostgreSQL) on threads of their own (``POLL_THREADS``), apart from
the request threads. A stream re-reads its key every ``KEY_CHECK_SECONDS`` and
ends once the key is revoked; the client's reconnect then gets a 401, which
makes an EventSource stop.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
import anyio.to_thread
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import Connection, Engine, bindparam, func, select
from sqlalchemy.orm import Session
from starlette.types import Receive, Scope, Send

from fitq.service.api.schemas import DB_INT_MAX
from fitq.service.db.engine import reading
from fitq.service.db.models import TERMINAL_STATUSES, ApiKey, Job, JobEvent
from fitq.service.errors import TooManyRequests
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
KEY_CHECK_SECONDS = 2.0
"""How often an open stream re-reads its key (a revoked key's streams end within it)."""
POLL_THREADS = 2
"""Threads per API process that run the streams' polls (each a few short reads)."""
RETRY_AFTER_SECONDS = 10
"""What a 429 for too many open streams tells the client to wait."""

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


_EVENT_COLUMNS = (JobEvent.id, JobEvent.job_id, JobEvent.kind, JobEvent.data, JobEvent.created_at)
_JOB_EVENTS = select(*_EVENT_COLUMNS).where(JobEvent.job_id == bindparam("job_id"))
_JOB_WITH_TIMING = select(*Job.__table__.columns, read.MEAN_EPOCH_SECONDS, read.EPOCHS_DONE).where(
    Job.id == bindparam("job_id")
)
_KEY_REVOKED_AT = select(ApiKey.revoked_at).where(ApiKey.id == bindparam("owner_id"))


def _events_after(conn: Connection, query: Any, after: int, skip: set[int]) -> list[Event]:
    rows = conn.execute(query.where(JobEvent.id > after).order_by(JobEvent.id).limit(BATCH))
    return [
        Event(row.id, row.job_id, row.kind, row.data, row.created_at)
        for row in rows
        if row.id not in skip
    ]


def job_reader(engine: Engine, job_id: str) -> Callable[[int, set[int]], Tick]:
    """Polls of one job: its progress snapshot first, then its events.

    The job row is read before the events: when it is terminal, the terminal
    event committed with it and is in the events read after."""
    events = _JOB_EVENTS.params(job_id=job_id)

    def poll(after: int, skip: set[int]) -> Tick:
        with reading(engine) as conn:
            job = conn.execute(_JOB_WITH_TIMING, {"job_id": job_id}).one_or_none()
            if job is None:  # deleted under the stream
                return Tick([], None, True)
            timing = read.Timing.of(job.mean_epoch_seconds, job.epochs_done)
            progress = read.progress(job, timing)  # type: ignore[arg-type]
            found = _events_after(conn, events, after, skip)
            terminal = job.status in TERMINAL_STATUSES and len(found) < BATCH
        return Tick(found, progress, terminal)

    return poll


def owner_reader(engine: Engine, owner_id: str) -> Callable[[int, set[int]], Tick]:
    """Polls of every job of one owner (the stream never ends by itself)."""
    query = (
        select(*_EVENT_COLUMNS).join(Job, Job.id == JobEvent.job_id).where(read.owned_by(owner_id))
    )

    def poll(after: int, skip: set[int]) -> Tick:
        with reading(engine) as conn:
            return Tick(_events_after(conn, query, after, skip))

    return poll


def key_checker(engine: Engine, owner_id: str) -> Callable[[], bool]:
    """Whether the key ``owner_id`` still exists and is not revoked (one read)."""

    def active() -> bool:
        with reading(engine) as conn:
            found = conn.execute(_KEY_REVOKED_AT, {"owner_id": owner_id}).one_or_none()
        return found is not None and found.revoked_at is None

    return active


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
    key_active: Callable[[], bool],
    limiter: anyio.CapacityLimiter | None = None,
    poll_seconds: float = POLL_SECONDS,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
    settle_seconds: float = SETTLE_SECONDS,
    key_check_seconds: float = KEY_CHECK_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[str]:
    """The SSE text of a stream that starts after event id ``after``; it ends
    after a poll that found its job terminal (job streams), at the first key
    check that finds the key revoked, or when the client goes away (the
    response cancels it). ``read`` and ``key_active`` run on ``limiter``'s threads."""
    cursor = Cursor(after)
    last_progress: dict[str, Any] | None = None
    yield f"retry: {RETRY_MILLISECONDS}\n\n"
    last_sent = key_checked = clock()
    while True:
        tick = await anyio.to_thread.run_sync(
            read, cursor.settled, set(cursor.recent), limiter=limiter
        )
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
        if now - key_checked >= key_check_seconds:
            if not await anyio.to_thread.run_sync(key_active, limiter=limiter):
                return
            key_checked = now
        cursor.settle(now, settle_seconds)
        if now - last_sent >= keepalive_seconds:
            yield ": keep-alive\n\n"
            last_sent = now
        if len(tick.events) < BATCH:
            await anyio.sleep(poll_seconds)


_EVENT_ID = re.compile(r"^[0-9]{1,10}$")


def resume_after(last_event_id: str | None) -> int | None:
    """The event id a ``Last-Event-ID`` header resumes after, or None when it
    names none this API could have sent: a browser sends back whatever id it
    saw, so such a header is ignored rather than refused."""
    if last_event_id is None or not _EVENT_ID.match(last_event_id.strip()):
        return None
    value = int(last_event_id)
    return value if value <= DB_INT_MAX else None


class StreamSlots:
    """The open streams of one API process, by key: a new one is refused (429)
    past ``max_total`` in all or ``max_per_key`` for its key. Used from the
    event loop only (no lock)."""

    def __init__(self, max_total: int, max_per_key: int):
        self.max_total, self.max_per_key = max_total, max_per_key
        self.open: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.open.values())

    def acquire(self, owner_id: str) -> None:
        if self.open[owner_id] >= self.max_per_key:
            raise TooManyRequests(
                f"this key has {self.open[owner_id]} event streams open, the limit of "
                f"{self.max_per_key} (FITQ_MAX_STREAMS_PER_KEY)",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            )
        if self.total >= self.max_total:
            raise TooManyRequests(
                f"this API process has {self.total} event streams open, the limit of "
                f"{self.max_total} (FITQ_MAX_STREAMS)",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            )
        self.open[owner_id] += 1

    def release(self, owner_id: str) -> None:
        self.open[owner_id] -= 1
        if self.open[owner_id] <= 0:
            del self.open[owner_id]


class SlotStream(StreamingResponse):
    """An event stream that holds a slot from its first byte to its end: taken
    when the response starts (after the route and its commit, so a slot is
    never taken by a response that is not sent), given back however it ends."""

    def __init__(self, content: AsyncIterator[str], slots: StreamSlots, owner_id: str):
        super().__init__(content, media_type=MEDIA_TYPE, headers=HEADERS)
        self.slots, self.owner_id = slots, owner_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            self.slots.acquire(self.owner_id)
        except TooManyRequests as exc:
            refusal = JSONResponse(exc.to_detail(), exc.status_code, headers=dict(exc.headers))
            await refusal(scope, receive, send)
            return
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slots.release(self.owner_id)


def nothing_left(session: Session, job: Job, after: int | None) -> bool:
    """A terminal job with no event after ``after`` (any, when None): its
    stream is answered 204, which tells an EventSource to stop reconnecting."""
    if job.status not in TERMINAL_STATUSES:
        return False
    later = session.scalar(
        select(JobEvent.id).where(JobEvent.job_id == job.id, JobEvent.id > (after or 0)).limit(1)
    )
    return later is None


def latest_id(engine: Engine) -> int:
    """The newest event id (0 for none): where a stream of "what comes next" starts."""
    with reading(engine) as conn:
        return int(conn.execute(select(func.max(JobEvent.id))).scalar() or 0)
