"""The queue's transitions on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import ast
import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from fitq.service import queue
from fitq.service import spec as specs
from fitq.service.db.engine import session_factory, transaction
from fitq.service.db.models import (
    EVENT_STATUS,
    QUEUED,
    ExecutionLog,
    Job,
    JobEpoch,
    JobEvent,
    utcnow,
)
from fitq.service.errors import StaleAttempt
from tests.queue.helpers import LEASE, SPEC, add_jobs, claim, get
from tests.support.specs import STORED_BEFORE

SERVICE = Path(__file__).resolve().parents[2] / "service"
WORKER = SERVICE.parent / "worker"


def new_job(owner_id: str) -> Job:
    now = utcnow()
    return Job(
        owner_id=owner_id, spec=SPEC, dataset_id="iris", epochs=1, created_at=now, updated_at=now
    )


class TestEnqueue:
    def test_writes_the_queued_row_and_the_first_status_event(
        self, database_url: str, owner: str
    ) -> None:
        with transaction(database_url) as session:
            job = new_job(owner)
            queue.enqueue(session, job)
        with session_factory(database_url)() as session:
            assert session.get(Job, job.id).status == QUEUED  # type: ignore[union-attr]
            events = session.scalars(select(JobEvent).where(JobEvent.job_id == job.id)).all()
        assert [(e.kind, e.data) for e in events] == [
            (EVENT_STATUS, {"status": QUEUED, "attempt": 0})
        ]
        assert events[0].created_at == job.created_at
        assert claim(database_url) is not None

    def test_nothing_but_the_queue_writes_a_job_status(self) -> None:
        """Every status write is in ``service/queue/``: no other module of the
        service or the worker passes ``status=`` to a Job or an UPDATE's values,
        nor assigns ``.status``."""
        modules = sorted([*SERVICE.rglob("*.py"), *WORKER.rglob("*.py")])
        writes = [
            f"{path.relative_to(SERVICE.parent)}:{line}"
            for path in modules
            if (SERVICE / "queue") not in path.parents
            for line in status_writes(path.read_text())
        ]
        assert writes == []

    def test_the_check_sees_each_kind_of_status_write(self) -> None:
        source = (
            "Job(status=QUEUED)\n"
            "update(Job).where(Job.id == i).values(status=FAILED)\n"
            "job.status = 'x'\n"
            "update(Sweep).values(status=DONE)\n"
            "sweep.status = 'y'\n"
        )
        assert status_writes(source) == [1, 2, 3]


def status_writes(source: str) -> list[int]:
    """The lines of ``source`` that write a job's status: ``Job(status=…)``,
    ``update(Job)….values(status=…)``, ``job.status = …``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and any(k.arg == "status" for k in node.keywords):
            called = _names(node.func)
            if called == ["Job"] or (called[-1:] == ["values"] and _on_job(node)):
                lines.append(node.lineno)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Attribute) and t.attr == "status" and "job" in _names(t.value)[-1:]
            for t in node.targets
        ):
            lines.append(node.lineno)
    return sorted(lines)


def _names(node: ast.expr) -> list[str]:
    """``a.b.c`` → ``["a", "b", "c"]`` (calls in the chain skipped)."""
    if isinstance(node, ast.Call):
        return _names(node.func)
    if isinstance(node, ast.Attribute):
        return [*_names(node.value), node.attr]
    return [node.id] if isinstance(node, ast.Name) else []


def _on_job(call: ast.Call) -> bool:
    """Whether a ``….values(…)`` chain starts from ``update(Job)`` or ``insert(Job)``."""
    node: ast.expr = call.func
    while isinstance(node, ast.Attribute | ast.Call):
        if isinstance(node, ast.Call) and _names(node.func)[-1:] in (["update"], ["insert"]):
            return any(isinstance(a, ast.Name) and a.id == "Job" for a in node.args)
        node = node.func if isinstance(node, ast.Call) else node.value
    return False


class TestClaim:
    def test_takes_highest_priority_then_oldest(self, database_url: str, owner: str) -> None:
        ids = add_jobs(database_url, owner, [0, 5, 5, -1])
        order = [claim(database_url).job_id for _ in ids]  # type: ignore[union-attr]
        assert order == [ids[1], ids[2], ids[0], ids[3]]
        assert claim(database_url) is None

    def test_marks_running_with_attempt_worker_and_lease(
        self, database_url: str, owner: str
    ) -> None:
        [job_id] = add_jobs(database_url, owner, [0])
        before = utcnow()
        got = claim(database_url, "worker-a", device="cpu")
        assert got is not None and got.attempt == 1
        job = get(database_url, job_id)
        assert (job.status, job.worker_id, job.device) == ("running", "worker-a", "cpu")
        assert job.lease_expires_at is not None
        assert job.lease_expires_at >= before + timedelta(seconds=LEASE - 1)
        assert job.started_at is not None

    def test_hands_a_spec_stored_before_an_upgrade_up_to_date(
        self, database_url: str, owner: str
    ) -> None:
        """A job queued by an earlier fitq lacks keys the engine now requires."""
        [job_id] = add_jobs(database_url, owner, [0])
        with transaction(database_url) as session:
            session.get(Job, job_id).spec = STORED_BEFORE  # type: ignore[union-attr]
        got = claim(database_url)
        assert got is not None and got.spec == specs.up_to_date(STORED_BEFORE) != STORED_BEFORE

    def test_concurrent_claimers_take_each_job_exactly_once(
        self, database_url: str, owner: str
    ) -> None:
        n_jobs, n_claimers = 200, 16
        ids = add_jobs(database_url, owner, [0] * n_jobs)
        taken: list[str] = []
        lock = threading.Lock()

        def claimer(name: str) -> None:
            while (got := claim(database_url, name)) is not None:
                with lock:
                    taken.append(got.job_id)

        threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(n_claimers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(taken) == sorted(ids)
        with session_factory(database_url)() as session:
            assert session.scalar(select(func.count()).where(Job.status == "queued")) == 0


class TestFencing:
    def test_a_superseded_attempt_cannot_write(self, database_url: str, owner: str) -> None:
        [job_id] = add_jobs(database_url, owner, [0])
        first = claim(database_url, "w1", lease=0.001)
        assert first is not None
        second = claim(database_url, "w2", now=utcnow() + timedelta(seconds=1))
        assert second is not None and second.attempt == 2
        for write in (
            lambda s: queue.heartbeat(s, job_id, first.attempt, LEASE),
            lambda s: queue.finish(s, job_id, first.attempt, model_key="m", test_metrics=None),
            lambda s: queue.fail(s, job_id, first.attempt, "boom"),
            lambda s: queue.requeue(s, job_id, first.attempt),
        ):
            with pytest.raises(StaleAttempt), transaction(database_url) as session:
                write(session)
        assert get(database_url, job_id).worker_id == "w2"

    def test_a_terminal_state_is_final(self, database_url: str, owner: str) -> None:
        [job_id] = add_jobs(database_url, owner, [0])
        got = claim(database_url)
        assert got is not None
        with transaction(database_url) as session:
            queue.finish(session, job_id, got.attempt, model_key="m", test_metrics={"loss": 1.0})
        with pytest.raises(StaleAttempt), transaction(database_url) as session:
            queue.fail(session, job_id, got.attempt, "late")
        with transaction(database_url) as session:
            queue.request_cancel(session, job_id)
        assert get(database_url, job_id).status == "succeeded"


class TestLease:
    def test_expired_lease_is_rescued_with_the_next_attempt(
        self, database_url: str, owner: str
    ) -> None:
        [job_id] = add_jobs(database_url, owner, [0])
        assert claim(database_url, "w1", lease=1) is not None
        rescued = claim(database_url, "w2", now=utcnow() + timedelta(seconds=2))
        assert rescued is not None and (rescued.job_id, rescued.attempt) == (job_id, 2)
        assert get(database_url, job_id).worker_id == "w2"

    def test_live_lease_is_not_taken(self, database_url: str, owner: str) -> None:
        add_jobs(database_url, owner, [0])
        assert claim(database_url, "w1") is not None
        assert claim(database_url, "w2") is None

    def test_spent_attempts_fail_the_job_with_the_reason(
        self, database_url: str, owner: str
    ) -> None:
        [job_id] = add_jobs(database_url, owner, [0], max_attempts=2)
        later = utcnow()
        for _ in range(2):
            later += timedelta(seconds=10)
            assert claim(database_url, lease=1, now=later) is not None
        assert claim(database_url, now=later + timedelta(seconds=10)) is None
        job = get(database_url, job_id)
        assert job.status == "failed"
        assert job.error == "worker lost on attempts 1–2"


class TestRequeue:
    def test_hand_back_is_claimed_again_with_its_checkpoint(
        self, database_url: str, owner: str
    ) -> None:
        [job_id] = add_jobs(database_url, owner, [0])
        got = claim(database_url)
        assert got is not None
        with transaction(database_url) as session:
            queue.record_checkpoint(session, job_id, got.attempt, "ckpt-key")
            queue.requeue(session, job_id, got.attempt)
        assert get(database_url, job_id).status == "queued"
        again = claim(database_url, "w2")
        assert again is not None
        assert (again.attempt, again.checkpoint_key) == (2, "ckpt-key")


class TestCancel:
    def test_queued_becomes_cancelled(self, database_url: str, owner: str) -> None:
        [job_id] = add_jobs(database_url, owner, [0])
        with transaction(database_url) as session:
            queue.request_cancel(session, job_id)
        assert get(database_url, job_id).status == "cancelled"
        assert claim(database_url) is None

    def test_running_job_learns_of_it_through_its_heartbeat(
        self, database_url: str, owner: str
    ) -> None:
        [job_id] = add_jobs(database_url, owner, [0])
        got = claim(database_url)
        assert got is not None
        with transaction(database_url) as session:
            assert queue.heartbeat(session, job_id, got.attempt, LEASE) is False
            queue.request_cancel(session, job_id)
            queue.request_cancel(session, job_id)  # idempotent
            assert queue.heartbeat(session, job_id, got.attempt, LEASE) is True
            queue.acknowledge_cancel(session, job_id, got.attempt)
        assert get(database_url, job_id).status == "cancelled"

    def test_cancel_of_a_dead_workers_job_ends_it_at_lease_expiry(
        self, database_url: str, owner: str
    ) -> None:
        [job_id] = add_jobs(database_url, owner, [0])
        assert claim(database_url, lease=1) is not None
        with transaction(database_url) as session:
            queue.request_cancel(session, job_id)
        assert claim(database_url, now=utcnow() + timedelta(seconds=5)) is None
        assert get(database_url, job_id).status == "cancelled"


class TestHandBackAfterCancel:
    def test_a_cancel_asked_before_the_hand_back_ends_the_job_cancelled(
        self, database_url: str, owner: str
    ) -> None:
        [job_id] = add_jobs(database_url, owner, [0])
        got = claim(database_url)
        assert got is not None
        with transaction(database_url) as session:
            queue.request_cancel(session, job_id)  # the worker has not heard of it yet
        with transaction(database_url) as session:
            queue.requeue(session, job_id, got.attempt)
        job = get(database_url, job_id)
        assert job.status == "cancelled" and job.finished_at is not None
        assert claim(database_url) is None


class TestExecutionLog:
    def test_a_superseded_attempts_run_stays_logged_though_its_epoch_is_refused(
        self, database_url: str, owner: str
    ) -> None:
        [job_id] = add_jobs(database_url, owner, [0])
        first = claim(database_url, "w1", lease=0.001)
        assert first is not None
        assert claim(database_url, "w2", now=utcnow() + timedelta(seconds=1)) is not None
        with transaction(database_url) as session:
            queue.log_execution(session, job_id, first.attempt, 1, "w1")
        with pytest.raises(StaleAttempt), transaction(database_url) as session:
            queue.record_epoch(
                session,
                job_id,
                first.attempt,
                epoch=1,
                metrics={"loss": 1.0},
                seconds=0.1,
                samples_per_second=1.0,
                checkpoint_key="k",
            )
        with session_factory(database_url)() as session:
            runs = session.execute(
                select(ExecutionLog.attempt, ExecutionLog.worker_id).where(
                    ExecutionLog.job_id == job_id
                )
            ).all()
            assert [tuple(r) for r in runs] == [(1, "w1")]
            assert session.scalar(select(func.count()).select_from(JobEpoch)) == 0


class TestRescueGuard:
    def test_a_lease_renewed_before_the_rescue_keeps_the_job(
        self, database_url: str, owner: str
    ) -> None:
        """The rescue's UPDATE re-checks status, lease and attempts itself."""
        [job_id] = add_jobs(database_url, owner, [0])
        got = claim(database_url, "w1", lease=1)
        assert got is not None
        later = utcnow() + timedelta(seconds=2)
        with transaction(database_url) as session:
            queue.heartbeat(session, job_id, got.attempt, LEASE, now=later)
        assert claim(database_url, "w2", now=later + timedelta(seconds=1)) is None
        job = get(database_url, job_id)
        assert (job.attempt, job.worker_id) == (1, "w1")

    def test_a_finished_job_is_never_rescued(self, database_url: str, owner: str) -> None:
        [job_id] = add_jobs(database_url, owner, [0])
        got = claim(database_url, "w1", lease=1)
        assert got is not None
        with transaction(database_url) as session:
            queue.finish(session, job_id, got.attempt, model_key="m", test_metrics=None)
        assert claim(database_url, "w2", now=utcnow() + timedelta(minutes=5)) is None
        assert get(database_url, job_id).status == "succeeded"


class TestNotify:
    def test_is_a_no_op_on_sqlite(self, sqlite_url: str) -> None:
        with transaction(sqlite_url) as session:
            queue.notify_new_job(session)

    @pytest.mark.postgres
    def test_listeners_hear_of_a_submission_and_a_hand_back_at_commit_only(
        self, postgres_url: str
    ) -> None:
        owner_id = _new_owner(postgres_url)
        with listener(postgres_url) as heard:
            with pytest.raises(RuntimeError), transaction(postgres_url) as session:
                queue.notify_new_job(session)
                raise RuntimeError("rolled back")
            assert heard(0.2) == 0
            with transaction(postgres_url) as session:
                job = new_job(owner_id)
                queue.enqueue(session, job)
                job_id = job.id
            assert heard(5) == 1
            got = claim(postgres_url)
            assert got is not None
            with transaction(postgres_url) as session:
                queue.requeue(session, job_id, got.attempt)
            assert heard(5) == 1


def _new_owner(url: str) -> str:
    from fitq.service import auth

    with transaction(url) as session:
        key = auth.create_key(session, "notify-owner")
        return auth.authenticate(session, f"Bearer {key}").id


@contextlib.contextmanager
def listener(url: str) -> Iterator[Callable[[float], int]]:
    """A LISTEN connection; ``heard(timeout)`` counts the notifications that
    arrive within ``timeout`` seconds (returning at the first)."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"LISTEN {queue.NOTIFY_CHANNEL}")

        def heard(timeout: float) -> int:
            return sum(1 for _ in conn.notifies(timeout=timeout, stop_after=1))

        yield heard
