"""A job whose workers die before it ends an epoch — the kernel's OOM killer at
work — fails after two such losses on different workers instead of killing a
worker per attempt (``queue.reap_expired``)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from fitq.service import queue
from fitq.service.db.engine import session_factory, transaction
from fitq.service.db.models import TERMINAL_STATUSES, JobEvent, utcnow
from tests.queue.helpers import LEASE, add_jobs, get
from tests.reliability.harness import DEADLINE_SECONDS, POLL_SECONDS, fleet, iris_spec, record
from tests.support.faults import Faults
from tests.support.rows import job_rows, submit
from tests.support.zygote import Zygote

OOM_ERROR = (
    "worker lost, likely out of memory: attempts 1–2 each ended with their worker before an "
    "epoch did, on different workers, so the job is not retried; use fewer or narrower "
    "layers or a smaller batch_size"
)


class Clock:
    """Claims at moments past each lease, so every claim finds the last one expired."""

    def __init__(self) -> None:
        self.now = utcnow()

    def later(self) -> datetime:
        self.now += timedelta(seconds=LEASE + 1)
        return self.now


def claim_at(url: str, worker: str, now: datetime) -> queue.Claim | None:
    with transaction(url) as session:
        return queue.claim(session, worker, LEASE, now=now)


def training(url: str, claim: queue.Claim | None) -> queue.Claim:
    """The claimed attempt reaches training (as a worker writes it)."""
    assert claim is not None
    with transaction(url) as session:
        queue.record_phase(session, claim.job_id, claim.attempt, "training")
    return claim


def losses(url: str, job_id: str) -> list[tuple[int, str]]:
    """The lost attempts noted for the job: (attempt, worker)."""
    with session_factory(url)() as session:
        events = session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        )
        return [(e.data["attempt"], e.data["worker_id"]) for e in events if e.data.get("lost")]


@pytest.fixture
def clock() -> Clock:
    return Clock()


class TestReaper:
    def test_lost_early_twice_on_two_workers_fails_the_job(
        self, database_url: str, owner_id: str, clock: Clock
    ) -> None:
        [job_id] = add_jobs(database_url, owner_id, [0], max_attempts=5)
        training(database_url, claim_at(database_url, "w1", clock.now))
        second = training(database_url, claim_at(database_url, "w2", clock.later()))
        assert second.attempt == 2  # one loss: rescued
        assert claim_at(database_url, "w3", clock.later()) is None
        row = get(database_url, job_id)
        assert (row.status, row.attempt, row.error) == ("failed", 2, OOM_ERROR)
        assert losses(database_url, job_id) == [(1, "w1")]

    def test_a_worker_that_outlived_its_lease_twice_is_not_blamed_on_the_job(
        self, database_url: str, owner_id: str, clock: Clock
    ) -> None:
        """The same worker twice: its database went away, say, not its memory."""
        [job_id] = add_jobs(database_url, owner_id, [0], max_attempts=5)
        training(database_url, claim_at(database_url, "w1", clock.now))
        training(database_url, claim_at(database_url, "w1", clock.later()))
        third = claim_at(database_url, "w1", clock.later())
        assert third is not None and third.attempt == 3
        assert losses(database_url, job_id) == [(1, "w1"), (2, "w1")]

    def test_an_attempt_that_ended_an_epoch_breaks_the_chain(
        self, database_url: str, owner_id: str, clock: Clock
    ) -> None:
        [job_id] = add_jobs(database_url, owner_id, [0], max_attempts=5)
        training(database_url, claim_at(database_url, "w1", clock.now))
        second = training(database_url, claim_at(database_url, "w2", clock.later()))
        with transaction(database_url) as session:
            queue.log_execution(session, job_id, second.attempt, 1, "w2")
        training(database_url, claim_at(database_url, "w3", clock.later()))
        fourth = claim_at(database_url, "w4", clock.later())
        assert fourth is not None and fourth.attempt == 4
        assert losses(database_url, job_id) == [(1, "w1"), (3, "w3")]

    def test_a_loss_in_a_pack_is_not_counted(
        self, database_url: str, owner_id: str, clock: Clock
    ) -> None:
        """Another member may have taken the memory."""
        [job_id] = add_jobs(database_url, owner_id, [0], max_attempts=5)
        first = training(database_url, claim_at(database_url, "w1", clock.now))
        with transaction(database_url) as session:
            queue.set_pack_size(session, "p", 2, [first])
        training(database_url, claim_at(database_url, "w2", clock.later()))
        third = claim_at(database_url, "w3", clock.later())
        assert third is not None and third.attempt == 3
        assert losses(database_url, job_id) == [(2, "w2")]

    def test_spent_attempts_keep_their_message(
        self, database_url: str, owner_id: str, clock: Clock
    ) -> None:
        [job_id] = add_jobs(database_url, owner_id, [0], max_attempts=2)
        training(database_url, claim_at(database_url, "w1", clock.now))
        training(database_url, claim_at(database_url, "w2", clock.later()))
        assert claim_at(database_url, "w3", clock.later()) is None
        assert get(database_url, job_id).error == "worker lost on attempts 1–2"

    def test_each_loss_is_noted_once(self, database_url: str, owner_id: str, clock: Clock) -> None:
        """Reaps that find the job still expired (no claim took it) add nothing."""
        [job_id] = add_jobs(database_url, owner_id, [0], max_attempts=5)
        training(database_url, claim_at(database_url, "w1", clock.now))
        later = clock.later()
        for _ in range(3):
            with transaction(database_url) as session:
                queue.reap_expired(session, later)
        assert losses(database_url, job_id) == [(1, "w1")]
        assert get(database_url, job_id).status == "running"


class TestKilledWorkers:
    """Real worker processes (tests/support: fleet, faults): the doomed job's
    worker is SIGKILLed at the first step of its first epoch, every attempt, as
    the OOM killer would; other jobs train beside it."""

    def test_the_job_fails_after_two_workers_and_the_others_succeed(
        self,
        database_url: str,
        backend: str,
        owner_id: str,
        home: Path,
        storage_url: str,
        zygote: Zygote,
    ) -> None:
        doomed = submit(database_url, owner_id, {**iris_spec(seed=1, epochs=3), "max_attempts": 5})
        others = [submit(database_url, owner_id, iris_spec(seed=i, epochs=2)) for i in range(4)]
        ids = [doomed, *others]
        deaths = 0
        started = time.monotonic()
        with fleet(home, database_url, storage_url, zygote, Faults(die_at=(doomed, 1))) as workers:
            for _ in range(2):
                workers.start()
            while any(
                r.status not in TERMINAL_STATUSES for r in job_rows(database_url, ids).values()
            ):
                assert time.monotonic() - started < DEADLINE_SECONDS, "jobs never ended"
                dead = len(workers.procs) - len(workers.alive())
                if dead > deaths:  # a worker died: start another in its place
                    for _ in range(dead - deaths):
                        workers.start()
                    deaths = dead
                time.sleep(POLL_SECONDS)
        rows = job_rows(database_url, ids)
        assert (rows[doomed].status, rows[doomed].error) == ("failed", OOM_ERROR)
        assert [rows[i].status for i in others] == ["succeeded"] * len(others)
        assert deaths == 2  # before: 5, one per attempt ("worker lost on attempts 1–5")
        record(
            "worker always dies in its first epoch (out of memory)",
            backend,
            jobs=len(ids),
            workers=2,
            kills=deaths,
            lost=0,
            duplicated_epochs=0,
            outcome="failed after 2 of 5 attempts, likely out of memory; 4/4 others succeeded",
            seconds=round(time.monotonic() - started, 1),
        )
