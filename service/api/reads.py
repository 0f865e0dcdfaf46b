"""The hot read routes: a job's status and its History.

Clients poll these, so each is the least work that still checks the key and
the owner: one hop to a thread of their own small pool (``serve``), one
connection without a transaction (``db.engine.reading``), Core statements
instead of ORM objects, and the key check joined into the first statement.
They fetch with their own SQL and build nothing of their own: the shape, the
owner check (``read.owned``) and the 404 are the read model's (``jobs/read.py``),
so the answers are those of the rest of the API, word for word.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.to_thread
from fastapi import Request, Response
from pydantic import BaseModel
from sqlalchemy import BindParameter, Connection, Row, and_, bindparam, select

from fitq.service import auth
from fitq.service.api.schemas import History, JobPublic, json_response
from fitq.service.db.engine import reading
from fitq.service.db.models import EVENT_STATUS, ApiKey, Job, JobEpoch, JobEvent
from fitq.service.errors import Unauthorized
from fitq.service.jobs import read

_DIGEST: BindParameter[str] = bindparam("digest")
_JOB_ID: BindParameter[str] = bindparam("job_id")
_AFTER: BindParameter[int] = bindparam("after")
_KEY_COLUMNS = (
    ApiKey.key_hash.label("key_hash_"),
    ApiKey.revoked_at.label("key_revoked_at_"),
)
_OWNED_JOB = read.owned(_JOB_ID, ApiKey.id)

# Built once: a statement object memoizes its cache key, so each request only
# binds its parameters (building the statement per request cost more than running it).
_JOB = (
    select(
        *_KEY_COLUMNS,
        *Job.__table__.columns,
        read.MEAN_EPOCH_SECONDS,
        read.EPOCHS_DONE,
    )
    .select_from(ApiKey)
    .outerjoin(Job, _OWNED_JOB)
    .where(ApiKey.key_hash == _DIGEST)
)
_STATUS_HISTORY = (
    select(JobEvent.data, JobEvent.created_at)
    .where(JobEvent.job_id == _JOB_ID, JobEvent.kind == EVENT_STATUS)
    .order_by(JobEvent.id)
)
_EPOCH_COLUMNS = (JobEpoch.epoch, JobEpoch.metrics, JobEpoch.seconds, JobEpoch.samples_per_second)
_HISTORY = (
    select(*_KEY_COLUMNS, Job.id, *_EPOCH_COLUMNS)
    .select_from(ApiKey)
    .outerjoin(Job, _OWNED_JOB)
    .outerjoin(JobEpoch, and_(JobEpoch.job_id == Job.id, JobEpoch.epoch > _AFTER))
    .where(ApiKey.key_hash == _DIGEST)
    .order_by(JobEpoch.epoch)
)


async def serve(
    request: Request, reader: Callable[[Connection, str | None], BaseModel]
) -> Response:
    """``reader(connection, authorization header)`` as a JSON response, run in one
    of the read threads (``FITQ_API_READ_THREADS`` per process, apart from the
    threads of the other routes; one by default).

    Few threads on purpose: a read on a local database waits on it for a
    fraction of its time, and every extra runnable thread competes for the
    GIL with the event loop, which is what stretched the latency tail under
    load (bench/api.py, docs/performance.md: 1 thread beat 2, 4 and 16).
    """

    def run() -> Response:
        with reading(request.app.state.engine) as conn:
            return json_response(reader(conn, request.headers.get("authorization")))

    limiter: anyio.CapacityLimiter = request.app.state.read_limiter
    return await anyio.to_thread.run_sync(run, limiter=limiter)


def job(conn: Connection, authorization: str | None, job_id: str) -> JobPublic:
    """``GET /v1/jobs/{job_id}``: two statements (key + job + epoch timing; status history)."""
    digest = auth.bearer_digest(authorization)
    row = conn.execute(_JOB, {"digest": digest, "job_id": job_id}).one_or_none()
    row = _checked(row, digest, job_id)
    events = conn.execute(_STATUS_HISTORY, {"job_id": job_id})
    timing = read.Timing.of(row.mean_epoch_seconds, row.epochs_done)
    return read.public(row, timing, events)  # type: ignore[arg-type]


def history(conn: Connection, authorization: str | None, job_id: str, after: int | None) -> History:
    """``GET /v1/jobs/{job_id}/metrics``: one statement (key, job and its epochs, joined)."""
    digest = auth.bearer_digest(authorization)
    rows = conn.execute(
        _HISTORY, {"digest": digest, "job_id": job_id, "after": -1 if after is None else after}
    ).all()
    _checked(rows[0] if rows else None, digest, job_id)  # type: ignore[arg-type]
    return read.history(r for r in rows if r.epoch is not None)


def _checked(row: Row[Any] | None, digest: str, job_id: str) -> Row[Any]:
    """The row, after a 401 without an active key and a 404 without the caller's job."""
    if row is None:
        raise Unauthorized()
    auth.require_active(digest, row.key_hash_, row.key_revoked_at_)
    if row.id is None:
        raise read.not_found(job_id)
    return row
