"""The heartbeat over several claims in one statement a tick (what a pack of
jobs trained together needs): each lease is extended and each progress
written; a claim whose lease was lost is dropped without costing the others
their progress; a cancel request reaches its own reporter only; claims join
and leave while it beats. Claims' writes made together (a pack's boundary)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from fitq.service import queue
from fitq.service.db.engine import transaction
from fitq.service.db.models import RUNNING, Job, utcnow
from fitq.service.errors import StaleAttempt
from fitq.worker import reporter as reporter_module
from fitq.worker.reporter import Database, Heartbeat, Reporter, write_together
from tests.support.rows import executions, job_row
from tests.support.waits import wait_for

LEASE_SECONDS = 0.6
"""A beat every 0.2 s."""
FAR = timedelta(minutes=10)


def reporter_of(db: Database, job: Job) -> Reporter:
    claim = queue.Claim(job_id=job.id, attempt=job.attempt, spec=job.spec, checkpoint_key=None)
    return Reporter(db, claim, worker_id="w")


def test_one_heartbeat_beats_each_claim_and_drops_a_lost_one(
    database_url: str, job_factory: Callable[..., Job]
) -> None:
    kept, lost = (
        job_factory(status=RUNNING, attempt=1, lease_expires_at=utcnow() + FAR) for _ in range(2)
    )
    db = Database(database_url, threading.Event())
    first, second = reporter_of(db, kept), reporter_of(db, lost)
    with transaction(database_url) as session:  # the second's lease went to another attempt
        session.get(Job, lost.id).attempt = 2  # type: ignore[union-attr]
    first.progress = (1, 5, 10)

    with Heartbeat(db, [first, second], LEASE_SECONDS).running():
        wait_for(second.lost.is_set, "the lost claim to be noticed")
        wait_for(lambda: job_row(database_url, kept.id).step == 5, "the kept claim's progress")
        with transaction(database_url) as session:
            queue.request_cancel(session, kept.id)
        wait_for(first.cancel.is_set, "the cancel request")

    row = job_row(database_url, kept.id)
    assert row.lease_expires_at is not None and row.lease_expires_at < utcnow() + FAR / 2
    assert not first.lost.is_set() and not second.cancel.is_set()
    assert (first.stop_asked(), second.stop_asked()) == ("cancel", "lost")
    assert job_row(database_url, lost.id).step == 0


def test_claims_join_and_leave_a_running_heartbeat(
    database_url: str, job_factory: Callable[..., Job]
) -> None:
    staying, joining = (
        job_factory(status=RUNNING, attempt=1, lease_expires_at=utcnow() + FAR) for _ in range(2)
    )
    db = Database(database_url, threading.Event())
    first, second = reporter_of(db, staying), reporter_of(db, joining)
    first.progress = (1, 1, 10)
    heartbeat = Heartbeat(db, [first], LEASE_SECONDS)
    with heartbeat.running():
        wait_for(lambda: job_row(database_url, staying.id).step == 1, "the first claim's beat")
        second.progress = (1, 2, 10)
        heartbeat.add(second)
        wait_for(lambda: job_row(database_url, joining.id).step == 2, "the joining claim's beat")
        heartbeat.discard(second)
        first.progress = second.progress = (1, 3, 10)
        wait_for(lambda: job_row(database_url, staying.id).step == 3, "a beat as it left")
        left = job_row(database_url, joining.id).lease_expires_at
        first.progress = second.progress = (1, 4, 10)
        wait_for(lambda: job_row(database_url, staying.id).step == 4, "a beat after it left")
    assert job_row(database_url, joining.id).step in (2, 3)  # the tick it left in may beat it
    assert job_row(database_url, joining.id).lease_expires_at == left
    assert not (first.lost.is_set() or second.lost.is_set())


def test_writes_together_commit_at_once_and_a_stale_one_is_undone_alone(
    database_url: str, job_factory: Callable[..., Job]
) -> None:
    kept, lost = (
        job_factory(status=RUNNING, attempt=1, lease_expires_at=utcnow() + FAR) for _ in range(2)
    )
    db = Database(database_url, threading.Event())
    first, second = reporter_of(db, kept), reporter_of(db, lost)
    with transaction(database_url) as session:
        session.get(Job, lost.id).attempt = 2  # type: ignore[union-attr]

    def logged_then_fenced(reporter: Reporter) -> Callable[..., str]:
        def write(session: Any, job: str, attempt: int) -> str:
            queue.log_execution(session, job, attempt, 1, "w")  # undone if the next is refused
            queue.record_progress(session, job, attempt, epoch=1, step=3, steps=9)
            return job

        return reporter.fenced(write)

    answers = write_together(db, "test", [logged_then_fenced(first), logged_then_fenced(second)])
    assert answers[0] == kept.id and isinstance(answers[1], StaleAttempt)
    assert (job_row(database_url, kept.id).step, job_row(database_url, lost.id).step) == (3, 0)
    assert (executions(database_url, [kept.id]), executions(database_url, [lost.id])) == (1, 0)


def test_an_epoch_of_a_job_whose_cancel_was_asked_is_refused_alone_and_heard(
    database_url: str, job_factory: Callable[..., Job]
) -> None:
    kept, cancelled = (
        job_factory(status=RUNNING, attempt=1, lease_expires_at=utcnow() + FAR) for _ in range(2)
    )
    db = Database(database_url, threading.Event())
    first, second = reporter_of(db, kept), reporter_of(db, cancelled)
    with transaction(database_url) as session:
        queue.request_cancel(session, cancelled.id)
    writes = [r.epoch_write(1, {"loss": 0.5}, f"k-{r.claim.job_id}") for r in (first, second)]
    answers = write_together(db, "epoch", writes)
    assert answers[0] is False and isinstance(answers[1], queue.CancelRequested)
    assert (job_row(database_url, kept.id).epoch, job_row(database_url, cancelled.id).epoch) == (
        1,
        0,
    )
    with pytest.raises(queue.CancelRequested):  # alone, it also sets the step hook's flag
        second.epoch(1, {"loss": 0.5}, "k")
    assert second.stop_asked() == "cancel" and first.stop_asked() is None


def test_a_heartbeats_cancel_listener_hears_a_cancel_without_a_beat(
    database_url: str, job_factory: Callable[..., Job], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No beat in the test's time: only the listener (NOTIFY, or SQLite's poll) can tell."""
    monkeypatch.setattr(reporter_module, "REPORT_SECONDS", 3600.0)
    job = job_factory(status=RUNNING, attempt=1, lease_expires_at=utcnow() + FAR)
    db = Database(database_url, threading.Event())
    reporter = reporter_of(db, job)
    with Heartbeat(db, [reporter], lease_seconds=36_000).running():
        with transaction(database_url) as session:
            queue.request_cancel(session, job.id)
        wait_for(reporter.cancel.is_set, "the cancel heard")
