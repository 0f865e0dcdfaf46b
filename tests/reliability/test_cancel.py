"""Cancel, in every state a job can be in when it is asked: queued (at once),
running mid-epoch (at the next step boundary; the worker goes on to the next
job), twice (one cancel), and at the moment of completion (one terminal state,
which then never changes). A cancel lands: with epochs far shorter than the
heartbeat, no History row is written after the cancel is committed, and the
worker stops within a few steps (told by ``NOTIFY fitq_cancel`` on PostgreSQL,
a poll of its jobs' cancel flags on SQLite)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from fitq.service import queue
from fitq.service.db.engine import session_factory, transaction
from fitq.service.db.models import TERMINAL_STATUSES, JobEpoch, utcnow
from fitq.service.errors import StaleAttempt
from fitq.service.settings import Settings
from fitq.worker.runner import Worker
from tests.reliability.harness import DEADLINE_SECONDS, LEASE_SECONDS, iris_spec, record, summary
from tests.support.rows import epochs_of, job_row, submit
from tests.support.waits import wait_for
from tests.worker.helpers import start

MID_EPOCH_CANCELS = 3
LONG = iris_spec(epochs=10_000, batch_size=1)
SHORT = iris_spec(epochs=10_000, batch_size=16)
"""10 steps an epoch: an epoch takes a few tens of ms, far less than a heartbeat."""


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"lease_seconds": LEASE_SECONDS, "poll_seconds": 0.05})


def cancel(url: str, job_id: str) -> None:
    with transaction(url) as session:
        queue.request_cancel(session, job_id)


def aware(at: datetime) -> datetime:
    """SQLite hands timestamps back without their (UTC) zone."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def recorded_at(url: str, job_id: str) -> list[datetime]:
    """When each History row of the job was written."""
    with session_factory(url)() as session:
        rows = session.scalars(select(JobEpoch.created_at).where(JobEpoch.job_id == job_id))
        return [aware(at) for at in rows]


def run_worker(settings: Settings, max_jobs: int) -> threading.Thread:
    return start(Worker(settings), max_jobs)


def assert_final(url: str, job_id: str) -> str:
    """Cancel again and try a late write of the last attempt: nothing changes."""
    before = job_row(url, job_id)
    assert before.status in TERMINAL_STATUSES
    cancel(url, job_id)
    with pytest.raises(StaleAttempt), transaction(url) as session:
        queue.finish(session, job_id, max(before.attempt, 1), model_key="x", test_metrics=None)
    after = job_row(url, job_id)
    assert (after.status, after.finished_at, after.model_key) == (
        before.status,
        before.finished_at,
        before.model_key,
    )
    return after.status


class TestCancel:
    def test_a_queued_job_is_cancelled_at_once_and_never_claimed(
        self, database_url: str, owner_id: str
    ) -> None:
        job_id = submit(database_url, owner_id, LONG)
        cancel(database_url, job_id)
        assert job_row(database_url, job_id).status == "cancelled"
        with transaction(database_url) as session:
            assert queue.claim(session, "w", LEASE_SECONDS) is None
        assert_final(database_url, job_id)

    def test_a_running_job_stops_mid_epoch_and_the_worker_takes_the_next(
        self, database_url: str, backend: str, owner_id: str, fast_settings: Settings
    ) -> None:
        ids = [submit(database_url, owner_id, LONG) for _ in range(MID_EPOCH_CANCELS)]
        last = submit(database_url, owner_id, iris_spec(epochs=2))
        thread = run_worker(fast_settings, max_jobs=MID_EPOCH_CANCELS + 1)
        latencies = []
        for job_id in ids:
            wait_for(
                lambda job_id=job_id: (
                    (r := job_row(database_url, job_id)).step > 0 and r.epoch >= 1
                ),
                "training to start",
                timeout=DEADLINE_SECONDS,
            )
            asked = time.monotonic()
            cancel(database_url, job_id)
            wait_for(
                lambda job_id=job_id: job_row(database_url, job_id).status != "running",
                "stop",
                timeout=DEADLINE_SECONDS,
            )
            latencies.append(time.monotonic() - asked)
            assert assert_final(database_url, job_id) == "cancelled"
            assert job_row(database_url, job_id).model_key is None
        thread.join(DEADLINE_SECONDS)
        assert not thread.is_alive()
        assert job_row(database_url, last).status == "succeeded"
        record(
            "cancel",
            backend,
            jobs=MID_EPOCH_CANCELS + 1,
            workers=1,
            kills=0,
            lost=0,
            duplicated_epochs=0,
            cancel=summary(latencies),
        )

    def test_twice_is_one_cancel(
        self, database_url: str, owner_id: str, fast_settings: Settings
    ) -> None:
        job_id = submit(database_url, owner_id, LONG)
        thread = run_worker(fast_settings, max_jobs=1)
        wait_for(
            lambda: job_row(database_url, job_id).step > 0,
            "training to start",
            timeout=DEADLINE_SECONDS,
        )
        cancel(database_url, job_id)
        cancel(database_url, job_id)
        thread.join(DEADLINE_SECONDS)
        assert not thread.is_alive()
        assert assert_final(database_url, job_id) == "cancelled"

    def test_at_completion_one_terminal_state_wins_and_stays(
        self, database_url: str, owner_id: str, fast_settings: Settings
    ) -> None:
        epochs = 3
        job_id = submit(database_url, owner_id, iris_spec(epochs=epochs, batch_size=4))
        thread = run_worker(fast_settings, max_jobs=1)
        wait_for(
            lambda: (
                (r := job_row(database_url, job_id)).epoch >= epochs
                or r.status in TERMINAL_STATUSES
            ),
            "the last epoch",
            timeout=DEADLINE_SECONDS,
        )
        cancel(database_url, job_id)
        thread.join(DEADLINE_SECONDS)
        assert not thread.is_alive()
        status = assert_final(database_url, job_id)
        row = job_row(database_url, job_id)
        if status == "succeeded":
            assert row.model_key is not None
        else:
            assert status == "cancelled" and row.model_key is None


class TestCancelLands:
    def test_no_epoch_is_recorded_after_the_cancel_and_the_worker_stops_at_once(
        self, database_url: str, backend: str, owner_id: str, settings: Settings
    ) -> None:
        """The default lease (a heartbeat a second) and epochs of a few tens of ms:
        the heartbeat alone would let a dozen more epochs be recorded."""
        ids = [submit(database_url, owner_id, SHORT) for _ in range(MID_EPOCH_CANCELS)]
        thread = run_worker(settings.model_copy(update={"poll_seconds": 0.05}), len(ids))
        latencies = []
        for job_id in ids:
            wait_for(
                lambda job_id=job_id: len(epochs_of(database_url, job_id)) >= 2,
                "two epochs recorded",
                timeout=DEADLINE_SECONDS,
            )
            cancel(database_url, job_id)
            acked = utcnow()  # the cancel is committed: from here on, no epoch
            recorded = epochs_of(database_url, job_id)
            wait_for(
                lambda job_id=job_id: job_row(database_url, job_id).status != "running",
                "stop",
                timeout=DEADLINE_SECONDS,
            )
            row = job_row(database_url, job_id)
            assert row.status == "cancelled" and row.finished_at is not None
            assert epochs_of(database_url, job_id) == recorded
            assert [at for at in recorded_at(database_url, job_id) if at > acked] == []
            latencies.append((aware(row.finished_at) - acked).total_seconds())
        thread.join(DEADLINE_SECONDS)
        assert not thread.is_alive()
        record(
            "cancel, short epochs",
            backend,
            jobs=len(ids),
            workers=1,
            kills=0,
            lost=0,
            duplicated_epochs=0,
            epochs_after_cancel=0,
            cancel=summary(latencies),
        )
