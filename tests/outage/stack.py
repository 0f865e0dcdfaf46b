"""The real processes the outage tests run against the outage cluster (one
``fitq api`` and two ``fitq worker``), and the checks every outage must pass:
each job ends, each epoch is recorded once, no attempt is spent on an outage
shorter than the lease, nothing is left ``running``."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import Popen
from typing import Any, TypeVar

import httpx
from sqlalchemy import select

from fitq.service.db.engine import session_factory
from fitq.service.db.models import RUNNING, TERMINAL_STATUSES, ExecutionLog, Job, JobEpoch
from tests.e2e.processes import (
    fitq_env,
    fitq_process,
    free_port,
    run_fitq,
    wait_for_line,
    wait_healthy,
)
from tests.worker.helpers import iris_spec

WORKERS = 2
LEASE_SECONDS = 15.0
"""Longer than an outage (about 3 s down, 1 s to start): none may cost an attempt."""
POLL_SECONDS = 0.5
STEP_DELAY_MS = 40
"""With iris (150 rows, batch 16: 10 steps) an epoch lasts about half a second."""
EPOCHS = 12
END_TIMEOUT_SECONDS = 180
WAIT_SECONDS = 60
HTTP_TIMEOUT_SECONDS = 10

T = TypeVar("T")


@dataclass
class Stack:
    """The API's URL and key, the database the processes share, the processes."""

    url: str
    key: str
    database_url: str
    api: Popen[bytes]
    workers: list[Popen[bytes]]
    logs: list[Path]
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=HTTP_TIMEOUT_SECONDS,
        )

    def assert_alive(self) -> None:
        """No process died (an outage must not take one down)."""
        for proc, log in zip([self.api, *self.workers], self.logs, strict=True):
            assert proc.poll() is None, f"{log.name} exited:\n{log.read_text()[-4000:]}"

    def log_text(self) -> str:
        return "\n".join(log.read_text(errors="replace") for log in self.logs[1:])

    def submit(self, count: int, *, seed: int = 0, **spec: Any) -> list[str]:
        ids = []
        for i in range(count):
            body = {**iris_spec(seed=seed + i, epochs=EPOCHS, batch_size=16), **spec}
            response = self.http.post("/v1/jobs", json=body)
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        return ids

    def jobs(self, ids: list[str]) -> dict[str, Job]:
        with session_factory(self.database_url)() as session:
            rows = session.scalars(select(Job).where(Job.id.in_(ids))).all()
            return {row.id: row for row in rows}

    def wait_training(self, ids: list[str], *, epochs: int, running: int) -> list[str]:
        """Wait until ``running`` of ``ids`` run and have finished ``epochs`` epochs
        each; return those ids."""

        def ready() -> list[str]:
            rows = self.jobs(ids).values()
            busy = [j.id for j in rows if j.status == RUNNING and (j.epoch or 0) > epochs]
            return busy if len(busy) >= running else []

        return wait_until(ready, f"{running} jobs past epoch {epochs}", WAIT_SECONDS)

    def wait_ended(self, ids: list[str]) -> dict[str, Job]:
        def ended() -> dict[str, Job]:
            rows = self.jobs(ids)
            done = all(j.status in TERMINAL_STATUSES for j in rows.values())
            return rows if done and len(rows) == len(ids) else {}

        return wait_until(ended, "every job to end", END_TIMEOUT_SECONDS, self.log_text)

    def wait_heartbeats(self, ids: list[str], since: datetime) -> float:
        """Seconds until every job of ``ids`` either ended or had its lease
        extended by a heartbeat written after ``since`` (its worker reconnected)."""
        started = time.monotonic()
        after = since + timedelta(seconds=LEASE_SECONDS)

        def beaten() -> bool:
            rows = self.jobs(ids).values()
            return all(
                j.status in TERMINAL_STATUSES
                or (j.lease_expires_at is not None and j.lease_expires_at > after)
                for j in rows
            )

        wait_until(beaten, "a heartbeat after the outage", WAIT_SECONDS, self.log_text)
        return time.monotonic() - started

    def wait_ready(self) -> float:
        """Seconds until ``/readyz`` answers 200 again."""
        started = time.monotonic()
        wait_until(lambda: self.http.get("/readyz").status_code == 200, "/readyz 200", WAIT_SECONDS)
        return time.monotonic() - started


def wait_until(
    predicate: Callable[[], T], what: str, seconds: float, context: Callable[[], str] = str
) -> T:
    """Poll ``predicate`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + seconds
    while True:
        value: T | None
        try:
            value = predicate()
        except Exception:  # the database may still be coming back
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{context()[-6000:]}")
        time.sleep(0.1)


def utc_now() -> datetime:
    return datetime.now(UTC)


def assert_ended_once(stack: Stack, ids: list[str]) -> dict[str, int]:
    """Every job succeeded on its first attempt with each epoch recorded and run
    once; returns the figures (jobs ended, duplicates, lost)."""
    rows = stack.wait_ended(ids)
    with session_factory(stack.database_url)() as session:
        epochs = session.execute(
            select(JobEpoch.job_id, JobEpoch.epoch).where(JobEpoch.job_id.in_(ids))
        ).all()
        runs = session.execute(
            select(ExecutionLog.job_id, ExecutionLog.attempt, ExecutionLog.epoch).where(
                ExecutionLog.job_id.in_(ids)
            )
        ).all()
        still_running = session.scalars(select(Job.id).where(Job.status == RUNNING)).all()
    statuses = {j.id: (j.status, j.attempt, j.error) for j in rows.values()}
    assert all(s == ("succeeded", 1, None) for s in statuses.values()), (
        f"{statuses}\n{stack.log_text()[-6000:]}"
    )
    assert all(j.lease_expires_at is None for j in rows.values())
    assert still_running == []
    expected = sorted((j, e) for j in ids for e in range(1, EPOCHS + 1))
    assert sorted(epochs) == expected, "an epoch is missing or recorded twice"
    duplicates = sum(n - 1 for n in Counter(runs).values())
    assert duplicates == 0, "an epoch ran twice in one attempt"
    return {"jobs_ended": len(rows), "duplicates": duplicates, "lost": len(ids) - len(rows)}


@contextmanager
def start_stack(home: Path, database_url: str) -> Iterator[Stack]:
    """Migrate ``database_url`` with ``fitq db upgrade``, make a key, start the processes."""
    env = fitq_env(
        home,
        FITQ_DATABASE_URL=database_url,
        FITQ_LEASE_SECONDS=str(LEASE_SECONDS),
        FITQ_POLL_SECONDS=str(POLL_SECONDS),
        FITQ_TEST_STEP_DELAY_MS=str(STEP_DELAY_MS),
        FITQ_THREADS="1",
    )
    upgraded = run_fitq(["db", "upgrade"], env)
    assert upgraded.returncode == 0, upgraded.stderr
    created = run_fitq(["keys", "create", "outage"], env)
    assert created.returncode == 0, created.stderr
    port = free_port()
    logs = [home / "api.log", *(home / f"worker{i}.log" for i in range(1, WORKERS + 1))]
    with ExitStack() as processes:
        api = processes.enter_context(fitq_process(["api", "--port", str(port)], env, logs[0]))
        workers = [processes.enter_context(fitq_process(["worker"], env, log)) for log in logs[1:]]
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, api, logs[0])
        for log in logs[1:]:
            wait_for_line(log, "worker started")
        stack = Stack(url, created.stdout.strip(), database_url, api, workers, logs)
        try:
            yield stack
        finally:
            stack.http.close()
