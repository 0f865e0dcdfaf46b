"""Prometheus metrics of the API.

- ``fitq_http_requests_total{method, route, status}`` and
  ``fitq_http_request_duration_seconds{method, route}``: by route *template*
  (``/v1/jobs/{job_id}``), so ids never become labels; a path that matched no
  route is ``route="unmatched"``.
- ``fitq_jobs{status}`` and ``fitq_datasets``: read from the database at
  scrape time (every status is reported, zeros included), so every API
  replica reports the same numbers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.db.models import JOB_STATUSES, Dataset, Job

log = logging.getLogger("fitq.metrics")

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


class _DatabaseCollector(Collector):
    """Counts read once per scrape from one session."""

    def __init__(self, session: Session):
        self.session = session

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_status = dict.fromkeys(JOB_STATUSES, 0)
        for status, count in self.session.execute(
            select(Job.status, func.count()).group_by(Job.status)
        ):
            by_status[status] = int(count)
        jobs = GaugeMetricFamily("fitq_jobs", "Jobs in the database, by status.", labels=["status"])
        for status, count in by_status.items():
            jobs.add_metric([status], count)
        yield jobs
        n = self.session.scalar(select(func.count()).select_from(Dataset)) or 0
        yield GaugeMetricFamily("fitq_datasets", "Uploaded datasets (built-ins excluded).", n)


def render(session: Session) -> bytes:
    """The exposition text: the process's metrics, then the database's (left
    out, with a log line, when the database does not answer)."""
    database = CollectorRegistry(auto_describe=False)
    database.register(_DatabaseCollector(session))
    try:
        from_database = generate_latest(database)
    except SQLAlchemyError as exc:
        log.warning("metrics without the database", extra={"error": type(exc).__name__})
        from_database = b""
    return generate_latest(REGISTRY) + from_database


class MetricsMiddleware:
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
