"""Races on one job, 200 times each, on PostgreSQL (where they are real: SQLite
serializes writers): a rescue of an expired lease against the completion of
the attempt it would supersede, the reaper against a completion, and a rescue
against a heartbeat. Exactly one side wins, and a terminal state is never
overwritten."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import pytest

from fitq.service import auth, queue
from fitq.service.db.engine import transaction
from fitq.service.db.models import Job, utcnow
from fitq.service.errors import StaleAttempt
from tests.reliability.harness import ARTIFACT, record
from tests.support.rows import job_row

pytestmark = pytest.mark.postgres

ROUNDS = 200
VARIANT_ROUNDS = 50
"""The reaper and heartbeat variants: the same statements, fewer rounds."""
LEASE = 60.0


@pytest.fixture
def owner_id(postgres_url: str) -> str:
    with transaction(postgres_url) as session:
        key = auth.create_key(session, "racer")
        return auth.authenticate(session, f"Bearer {key}").id


def expired_job(url: str, owner_id: str, attempt: int, max_attempts: int = 3) -> str:
    now = utcnow()
    with transaction(url) as session:
        row = Job(
            owner_id=owner_id,
            spec={"dataset_id": "iris"},
            dataset_id="iris",
            epochs=1,
            status="running",
            attempt=attempt,
            max_attempts=max_attempts,
            worker_id="old",
            lease_expires_at=now - timedelta(seconds=1),
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        return row.id


def race(first: Callable[[], Any], second: Callable[[], Any]) -> tuple[Any, Any]:
    """Run both at once; each result is its return value or the exception it raised."""
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def run(i: int, fn: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = fn()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate((first, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results[0], results[1]


def finish(url: str, job_id: str, attempt: int) -> str:
    with transaction(url) as session:
        queue.finish(session, job_id, attempt, model_key="m", test_metrics=None)
    return "finished"


def rescue(url: str) -> queue.Claim | None:
    with transaction(url) as session:
        return queue.claim(session, "rescuer", LEASE)


def assert_terminal_is_final(url: str, job_id: str, attempt: int) -> None:
    before = job_row(url, job_id)
    with transaction(url) as session:
        queue.request_cancel(session, job_id)
    for late in (
        lambda s: queue.fail(s, job_id, attempt, "late"),
        lambda s: queue.requeue(s, job_id, attempt),
        lambda s: queue.heartbeat(s, job_id, attempt, LEASE),
    ):
        with pytest.raises(StaleAttempt), transaction(url) as session:
            late(session)
    after = job_row(url, job_id)
    assert (after.status, after.attempt, after.finished_at) == (
        before.status,
        before.attempt,
        before.finished_at,
    )


class TestRescueRacesCompletion:
    def test_either_the_completion_or_the_rescue_wins_never_both(
        self, postgres_url: str, owner_id: str
    ) -> None:
        outcomes: Counter[str] = Counter()
        for _ in range(ROUNDS):
            job_id = expired_job(postgres_url, owner_id, attempt=1)
            done, claimed = race(
                partial(finish, postgres_url, job_id, 1), partial(rescue, postgres_url)
            )
            row = job_row(postgres_url, job_id)
            if done == "finished":
                assert claimed is None, "a finished job was rescued"
                assert (row.status, row.attempt) == ("succeeded", 1)
                assert_terminal_is_final(postgres_url, job_id, 1)
                outcomes["completion"] += 1
            else:
                assert isinstance(done, StaleAttempt), done
                assert claimed is not None and (claimed.job_id, claimed.attempt) == (job_id, 2)
                assert (row.status, row.attempt, row.worker_id) == ("running", 2, "rescuer")
                outcomes["rescue"] += 1
                with transaction(postgres_url) as session:  # out of the next round's way
                    queue.finish(session, job_id, 2, model_key="m", test_metrics=None)
        _record("rescue vs completion", outcomes)

    def test_the_reaper_never_fails_a_job_that_completed(
        self, postgres_url: str, owner_id: str
    ) -> None:
        outcomes: Counter[str] = Counter()
        for _ in range(VARIANT_ROUNDS):
            job_id = expired_job(postgres_url, owner_id, attempt=3, max_attempts=3)
            done, _ = race(partial(finish, postgres_url, job_id, 3), partial(rescue, postgres_url))
            row = job_row(postgres_url, job_id)
            if done == "finished":
                assert row.status == "succeeded" and row.error is None
                outcomes["completion"] += 1
            else:
                assert isinstance(done, StaleAttempt), done
                assert (row.status, row.error) == ("failed", "worker lost on attempts 1–3")
                outcomes["reaper"] += 1
            assert_terminal_is_final(postgres_url, job_id, 3)
        _record("reaper vs completion", outcomes)

    def test_a_heartbeat_and_a_rescue_never_both_succeed(
        self, postgres_url: str, owner_id: str
    ) -> None:
        outcomes: Counter[str] = Counter()
        for _ in range(VARIANT_ROUNDS):
            job_id = expired_job(postgres_url, owner_id, attempt=1)

            def beat(job_id: str = job_id) -> bool:
                with transaction(postgres_url) as session:
                    return queue.heartbeat(session, job_id, 1, LEASE)

            beaten, claimed = race(beat, partial(rescue, postgres_url))
            row = job_row(postgres_url, job_id)
            if beaten is False:  # the lease was renewed first: the rescue re-checked it
                assert claimed is None and (row.attempt, row.worker_id) == (1, "old")
                outcomes["heartbeat"] += 1
            else:
                assert isinstance(beaten, StaleAttempt), beaten
                assert claimed is not None and row.attempt == 2
                outcomes["rescue"] += 1
            with transaction(postgres_url) as session:
                queue.finish(session, job_id, row.attempt, model_key="m", test_metrics=None)
        _record("rescue vs heartbeat", outcomes)


def _record(race_name: str, outcomes: Counter[str]) -> None:

    data = json.loads(ARTIFACT.read_text()) if ARTIFACT.exists() else {}
    previous = data.get("rescue racing completion", {}).get("postgres", {}).get("races", {})
    record(
        "rescue racing completion",
        "postgres",
        jobs=sum(sum(o.values()) for o in {**previous, race_name: outcomes}.values()),
        workers=2,
        kills=0,
        lost=0,
        duplicated_epochs=0,
        overwritten_terminal=0,
        races={**previous, race_name: dict(outcomes)},
    )
