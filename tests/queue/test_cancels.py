"""A cancel that lands: once a running job's cancel is committed no History row is
written for it (the fence on ``cancel_requested``), and its worker is told at once
(``NOTIFY fitq_cancel`` with the job's id, on PostgreSQL)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from fitq.service import auth, queue
from fitq.service.db.engine import session_factory, transaction
from fitq.service.db.models import EVENT_EPOCH, JobEpoch, JobEvent
from fitq.service.errors import StaleAttempt
from tests.queue.helpers import add_jobs, claim, get


def record_epoch(url: str, job_id: str, attempt: int, epoch: int) -> None:
    with transaction(url) as session:
        queue.record_epoch(
            session,
            job_id,
            attempt,
            epoch=epoch,
            metrics={"loss": 1.0},
            seconds=0.1,
            samples_per_second=1.0,
            checkpoint_key=f"k{epoch}",
        )


def cancel(url: str, job_id: str) -> None:
    with transaction(url) as session:
        queue.request_cancel(session, job_id)


class TestTheFence:
    def test_no_epoch_is_recorded_once_the_cancel_is_committed(
        self, database_url: str, owner: str
    ) -> None:
        [job_id] = add_jobs(database_url, owner, [0])
        got = claim(database_url)
        assert got is not None
        record_epoch(database_url, job_id, got.attempt, 1)
        cancel(database_url, job_id)
        with pytest.raises(queue.CancelRequested):
            record_epoch(database_url, job_id, got.attempt, 2)
        with session_factory(database_url)() as session:
            epochs = session.scalars(select(JobEpoch.epoch).where(JobEpoch.job_id == job_id))
            assert list(epochs) == [1]
            events = select(func.count()).where(JobEvent.kind == EVENT_EPOCH)
            assert session.scalar(events) == 1
        job = get(database_url, job_id)
        assert (job.status, job.epoch, job.checkpoint_key) == ("running", 1, "k1")
        with transaction(database_url) as session:  # the worker then acknowledges it
            queue.acknowledge_cancel(session, job_id, got.attempt)
        assert get(database_url, job_id).status == "cancelled"

    def test_a_superseded_attempt_is_still_stale_not_cancelled(
        self, database_url: str, owner: str
    ) -> None:
        [job_id] = add_jobs(database_url, owner, [0])
        got = claim(database_url)
        assert got is not None
        cancel(database_url, job_id)
        with pytest.raises(StaleAttempt):
            record_epoch(database_url, job_id, got.attempt + 1, 1)


class TestAnnounced:
    @pytest.mark.postgres
    def test_a_running_jobs_cancel_is_heard_with_its_id_at_commit_only(
        self, postgres_url: str
    ) -> None:
        owner = _new_owner(postgres_url)
        [queued, running] = add_jobs(postgres_url, owner, [0, 1])
        assert claim(postgres_url) is not None  # the higher priority: ``running``
        with listening(postgres_url) as heard:
            with pytest.raises(RuntimeError), transaction(postgres_url) as session:
                queue.request_cancel(session, running)
                raise RuntimeError("rolled back")
            assert heard(0.2) == []
            cancel(postgres_url, queued)  # cancelled at once: no worker to tell
            assert heard(0.2) == []
            cancel(postgres_url, running)
            assert heard(5) == [running]


def _new_owner(url: str) -> str:
    with transaction(url) as session:
        key = auth.create_key(session, "cancel-owner")
        return auth.authenticate(session, f"Bearer {key}").id


@contextlib.contextmanager
def listening(url: str) -> Iterator[Callable[[float], list[str]]]:
    """A LISTEN connection on the cancel channel; ``heard(timeout)`` the payloads of
    the notifications that arrive within ``timeout`` seconds (returning at the first)."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"LISTEN {queue.CANCEL_CHANNEL}")

        def heard(timeout: float) -> list[str]:
            return [n.payload for n in conn.notifies(timeout=timeout, stop_after=1)]

        yield heard
