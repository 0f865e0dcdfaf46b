"""Every write of a job's status (its first ``queued`` row included), and every
write a worker makes for a job: this package is the only place that writes them.

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
only way on SQLite. A running job's cancel is announced the same way to its
worker, on ``fitq_cancel`` with the job's id; once it is committed no History
row of the job is written (``CancelRequested``). The guarantees are written
down in docs/reliability.md.

Modules: ``requests`` (the writes a user's request makes: ``enqueue``,
``request_cancel``), ``claims`` (``claim``, ``claim_compatible`` for packs,
``set_pack_size``, the running-jobs quota), ``attempts`` (a worker's fenced writes:
heartbeats, progress, History rows, the ends), ``reaping`` (expired leases), ``base``
(the claim, events, the fence, NOTIFY). Callers use the package:
``from fitq.service import queue`` then ``queue.claim(…)``.
"""

from fitq.service.queue.attempts import (
    Beat,
    acknowledge_cancel,
    fail,
    finish,
    heartbeat,
    heartbeat_claims,
    log_execution,
    record_checkpoint,
    record_epoch,
    record_phase,
    record_progress,
    requeue,
    store_failures,
)
from fitq.service.queue.base import (
    CANCEL_CHANNEL,
    NOTIFY_CHANNEL,
    CancelRequested,
    Claim,
    notify_new_job,
)
from fitq.service.queue.claims import (
    claim,
    claim_compatible,
    set_pack_size,
    within_running_quota,
)
from fitq.service.queue.reaping import LOST_EARLY_TIMES, reap_expired
from fitq.service.queue.requests import enqueue, request_cancel

__all__ = [
    "CANCEL_CHANNEL",
    "LOST_EARLY_TIMES",
    "NOTIFY_CHANNEL",
    "Beat",
    "CancelRequested",
    "Claim",
    "acknowledge_cancel",
    "claim",
    "claim_compatible",
    "enqueue",
    "fail",
    "finish",
    "heartbeat",
    "heartbeat_claims",
    "log_execution",
    "notify_new_job",
    "reap_expired",
    "record_checkpoint",
    "record_epoch",
    "record_phase",
    "record_progress",
    "request_cancel",
    "requeue",
    "set_pack_size",
    "store_failures",
    "within_running_quota",
]
