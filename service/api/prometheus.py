"""The Prometheus text of ``GET /metrics``. (Everywhere else in fitq, "metrics"
are a model's Keras metrics: the spec's ``compile.metrics`` and their values
in the job and its History.)

- ``fitq_http_requests_total{method, route, status}`` and
  ``fitq_http_request_duration_seconds{method, route}``: by route *template*
  (``/v1/jobs/{job_id}``), so ids never become labels; a path that matched no
  route is ``route="unmatched"``.

Read from the database at scrape time, so every API replica reports the same
numbers and workers on any machine are covered without being scraped one by
one (they run behind ``docker compose --scale`` with no address of their own):

- ``fitq_jobs{status}`` (the queue depth: every status, zeros included) and
  ``fitq_datasets``.
- ``fitq_jobs_started_total`` (jobs claimed at least once),
  ``fitq_job_attempts_total`` (claims, retries included) and
  ``fitq_jobs_finished_total{status}`` (succeeded, failed, cancelled): counted
  from the jobs' rows, so they only grow while jobs are not deleted.
- ``fitq_epoch_duration_seconds``: a histogram of every recorded epoch's
  wall time (``job_epochs.seconds``), one aggregate query.
- Per worker with a running job (``worker_id``, ``device`` labels — as many
  series as jobs running): ``fitq_worker_heartbeat_age_seconds``, the time
  since its last heartbeat (the lease is ``lease_seconds`` from a heartbeat,
  so the API's ``FITQ_LEASE_SECONDS`` must be the workers'), and
  ``fitq_worker_lease_remaining_seconds`` (negative: the worker is gone and
  the job will be requeued). ``fitq_workers_busy`` counts workers on a job
  whose lease is live. An idle worker writes nothing, so it has no series.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fitq.service.db.models import (
    JOB_STATUSES,
    RUNNING,
    TERMINAL_STATUSES,
    Dataset,
    Job,
    JobEpoch,
    utcnow,
)

log = logging.getLogger("fitq.prometheus")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "unmatched"

REQUESTS = Counter(
    "fitq_http_requests",
    "HTTP requests answered, by route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "fitq_http_request_duration_seconds",
    "Time to answer an HTTP request (seconds), by route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
EPOCH_BUCKETS_SECONDS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
"""Upper bounds of ``fitq_epoch_duration_seconds`` (seconds)."""


class _DatabaseCollector(Collector):
    """Counts read once per scrape from one session."""

    def __init__(self, session: Session, *, lease_seconds: float, now: datetime | None = None):
        self.session = session
        self.lease_seconds = lease_seconds
        self.now = now

    def collect(self) -> Iterator[Metric]:
        yield from self._queue()
        yield from self._epochs()
        yield from self._workers()
        n = self.session.scalar(select(func.count()).select_from(Dataset)) or 0
        yield GaugeMetricFamily("fitq_datasets", "Uploaded datasets (built-ins excluded).", n)

    def _queue(self) -> Iterator[Metric]:
        by_status = dict.fromkeys(JOB_STATUSES, 0)
        attempts = 0
        started = 0
        for status, count, attempt_sum, started_count in self.session.execute(
            select(
                Job.status, func.count(), func.sum(Job.attempt), func.count(Job.started_at)
            ).group_by(Job.status)
        ):
            by_status[status] = int(count)
            attempts += int(attempt_sum or 0)
            started += int(started_count)
        jobs = GaugeMetricFamily("fitq_jobs", "Jobs in the database, by status.", labels=["status"])
        for status, count in by_status.items():
            jobs.add_metric([status], count)
        yield jobs
        yield CounterMetricFamily(
            "fitq_jobs_started", "Jobs a worker claimed at least once.", value=started
        )
        yield CounterMetricFamily(
            "fitq_job_attempts", "Claims of jobs by workers, retries included.", value=attempts
        )
        finished = CounterMetricFamily(
            "fitq_jobs_finished", "Jobs that ended, by final status.", labels=["status"]
        )
        for status in TERMINAL_STATUSES:
            finished.add_metric([status], by_status[status])
        yield finished

    def _epochs(self) -> Iterator[Metric]:
        seconds = JobEpoch.seconds
        row = self.session.execute(
            select(
                func.count(),
                func.sum(seconds),
                *(func.sum(case((seconds <= le, 1), else_=0)) for le in EPOCH_BUCKETS_SECONDS),
            ).select_from(JobEpoch)
        ).one()
        total, total_seconds, *cumulative = row
        buckets = [
            (_le(le), int(n or 0)) for le, n in zip(EPOCH_BUCKETS_SECONDS, cumulative, strict=True)
        ]
        buckets.append(("+Inf", int(total or 0)))
        yield HistogramMetricFamily(
            "fitq_epoch_duration_seconds",
            "Wall time of each recorded training epoch (seconds).",
            buckets=buckets,
            sum_value=float(total_seconds or 0.0),
        )

    def _workers(self) -> Iterator[Metric]:
        now = self.now or utcnow()
        latest: dict[tuple[str, str], datetime] = {}
        for worker_id, device, expires in self.session.execute(
            select(Job.worker_id, Job.device, Job.lease_expires_at).where(Job.status == RUNNING)
        ):
            if worker_id is None or expires is None:
                continue
            key = (worker_id, device or "")
            if key not in latest or expires > latest[key]:
                latest[key] = expires
        labels = ["worker_id", "device"]
        age = GaugeMetricFamily(
            "fitq_worker_heartbeat_age_seconds",
            "Seconds since the last heartbeat of each worker with a running job.",
            labels=labels,
        )
        remaining = GaugeMetricFamily(
            "fitq_worker_lease_remaining_seconds",
            "Seconds left on the lease of each worker's running job (negative: lost).",
            labels=labels,
        )
        busy = 0
        for key, expires in sorted(latest.items()):
            left = (expires - now).total_seconds()
            remaining.add_metric(list(key), left)
            age.add_metric(list(key), max(0.0, self.lease_seconds - left))
            busy += left > 0
        yield age
        yield remaining
        yield GaugeMetricFamily(
            "fitq_workers_busy", "Workers on a job whose lease is live.", value=busy
        )


def _le(bound: float) -> str:
    return str(float(bound))


def render(session: Session, *, lease_seconds: float, now: datetime | None = None) -> bytes:
    """The exposition text: the process's metrics, then the database's (left
    out, with a log line, when the database does not answer). ``lease_seconds``
    is the workers' lease, to tell a heartbeat's age from a lease's end."""
    database = CollectorRegistry(auto_describe=False)
    database.register(_DatabaseCollector(session, lease_seconds=lease_seconds, now=now))
    try:
        from_database = generate_latest(database)
    except SQLAlchemyError as exc:
        log.warning("metrics without the database", extra={"error": type(exc).__name__})
        from_database = b""
    return generate_latest(REGISTRY) + from_database


class PrometheusMiddleware:
    """Counts and times every HTTP request (pure ASGI, so streamed bodies pass through)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            method = scope.get("method", "")
            REQUESTS.labels(method, template, str(status)).inc()
            LATENCY.labels(method, template).observe(time.perf_counter() - started)
