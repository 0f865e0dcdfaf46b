"""The outage tests' stack and checks: one ``fitq api`` and two workers on the
outage cluster (tests/support's live stack, the workers' steps slowed so a
job is still training when the database goes away), and what every outage
must leave true: each job ends, each epoch is recorded once, no attempt is
spent on an outage shorter than the lease, nothing is left ``running``."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from fitq.service.db.engine import session_factory
from fitq.service.db.models import RUNNING, TERMINAL_STATUSES, ExecutionLog, Job, JobEpoch
from tests.support.faults import Faults
from tests.support.rows import job_rows
from tests.support.specs import iris_spec
from tests.support.stack import Stack, live_stack
from tests.support.waits import wait_for

WORKERS = 2
LEASE_SECONDS = 15.0
"""Longer than an outage (about 3 s down, 1 s to start): none may cost an attempt."""
POLL_SECONDS = 0.5
STEP_DELAY_MS = 40
"""With iris (150 rows, batch 16: 10 steps) an epoch lasts about half a second."""
EPOCHS = 12
END_TIMEOUT_SECONDS = 180
WAIT_SECONDS = 60


@contextmanager
def start_stack(workdir: Path, database_url: str) -> Iterator[Stack]:
    """The API and the workers over ``database_url`` (migrated here)."""
    with live_stack(
        workdir,
        database_url=database_url,
        workers=WORKERS,
        faults=Faults(step_delay_ms=STEP_DELAY_MS),
        FITQ_LEASE_SECONDS=str(LEASE_SECONDS),
        FITQ_POLL_SECONDS=str(POLL_SECONDS),
        FITQ_THREADS="1",
    ) as stack:
        yield stack


def wait(stack: Stack, predicate: Any, what: str, seconds: float = WAIT_SECONDS) -> Any:
    """``wait_for`` through an outage: an error (the database coming back) is "not yet"."""
    return wait_for(
        predicate,
        what,
        timeout=seconds,
        poll=0.1,
        context=stack.workers.log_text,
        retry_on=(Exception,),
    )


def submit(stack: Stack, count: int, *, seed: int = 0) -> list[str]:
    """``count`` iris jobs of ``EPOCHS`` epochs through the API."""
    ids = []
    for i in range(count):
        body = iris_spec(seed=seed + i, epochs=EPOCHS, batch_size=16)
        response = stack.http.post("/v1/jobs", json=body)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def wait_training(stack: Stack, ids: list[str], *, epochs: int, running: int) -> list[str]:
    """Wait until ``running`` of ``ids`` run and have finished ``epochs`` epochs
    each; return those ids."""

    def ready() -> list[str]:
        rows = job_rows(stack.database_url, ids).values()
        busy = [j.id for j in rows if j.status == RUNNING and (j.epoch or 0) > epochs]
        return busy if len(busy) >= running else []

    return wait(stack, ready, f"{running} jobs past epoch {epochs}")  # type: ignore[no-any-return]


def wait_ended(stack: Stack, ids: list[str]) -> dict[str, Job]:
    def ended() -> dict[str, Job]:
        rows = job_rows(stack.database_url, ids)
        done = all(j.status in TERMINAL_STATUSES for j in rows.values())
        return rows if done and len(rows) == len(ids) else {}

    return wait(stack, ended, "every job to end", END_TIMEOUT_SECONDS)  # type: ignore[no-any-return]


def wait_heartbeats(stack: Stack, ids: list[str], since: datetime) -> float:
    """Seconds until every job of ``ids`` either ended or had its lease
    extended by a heartbeat written after ``since`` (its worker reconnected)."""
    started = time.monotonic()
    after = since + timedelta(seconds=LEASE_SECONDS)

    def beaten() -> bool:
        return all(
            j.status in TERMINAL_STATUSES
            or (j.lease_expires_at is not None and j.lease_expires_at > after)
            for j in job_rows(stack.database_url, ids).values()
        )

    wait(stack, beaten, "a heartbeat after the outage")
    return time.monotonic() - started


def wait_ready(stack: Stack) -> float:
    """Seconds until ``/readyz`` answers 200 again."""
    started = time.monotonic()
    wait(stack, lambda: stack.http.get("/readyz").status_code == 200, "/readyz 200")
    return time.monotonic() - started


def utc_now() -> datetime:
    return datetime.now(UTC)


def assert_ended_once(stack: Stack, ids: list[str]) -> dict[str, int]:
    """Every job succeeded on its first attempt with each epoch recorded and run
    once; returns the figures (jobs ended, duplicates, lost)."""
    rows = wait_ended(stack, ids)
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
        f"{statuses}\n{stack.workers.log_text()[-6000:]}"
    )
    assert all(j.lease_expires_at is None for j in rows.values())
    assert still_running == []
    expected = sorted((j, e) for j in ids for e in range(1, EPOCHS + 1))
    assert sorted(epochs) == expected, "an epoch is missing or recorded twice"
    duplicates = sum(n - 1 for n in Counter(runs).values())
    assert duplicates == 0, "an epoch ran twice in one attempt"
    return {"jobs_ended": len(rows), "duplicates": duplicates, "lost": len(ids) - len(rows)}
