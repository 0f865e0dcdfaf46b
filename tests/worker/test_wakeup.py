"""An idle worker on PostgreSQL wakes on NOTIFY, not on its poll, and listens
again after its connection is lost."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from fitq.service import auth, queue
from fitq.service.db.engine import transaction
from fitq.service.jobs import submission
from fitq.service.settings import Settings
from fitq.worker.runner import Worker
from tests.worker.helpers import WAIT_SECONDS, iris_spec, job_row, start, wait_for

pytestmark = pytest.mark.postgres

POLL_SECONDS = 120.0
"""Long enough that only a notification can explain a prompt pickup."""
PICKUP_DEADLINE_SECONDS = 30.0


def listeners(url: str) -> list[int]:
    """The backend pids LISTENing on the queue's channel in this database."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND query = %s AND pid <> pg_backend_pid()",
            (f"LISTEN {queue.NOTIFY_CHANNEL}",),
        ).fetchall()
    return [r[0] for r in rows]


def terminate(url: str, pid: int) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def submit_and_time_pickup(url: str, owner_id: str) -> float:
    with transaction(url) as session:
        job, _ = submission.submit(session, owner_id, iris_spec(epochs=1))
    committed = time.monotonic()
    deadline = committed + PICKUP_DEADLINE_SECONDS
    while job_row(url, job.id).status == "queued":
        assert time.monotonic() < deadline, "the idle worker did not wake on NOTIFY"
        time.sleep(0.005)
    return time.monotonic() - committed


def test_an_idle_worker_wakes_on_notify_and_listens_again_after_a_disconnect(
    postgres_url: str, tmp_path: Path
) -> None:
    with transaction(postgres_url) as session:
        key = auth.create_key(session, "wakeup")
        owner_id = auth.authenticate(session, f"Bearer {key}").id
    settings = Settings(
        home=tmp_path / "home",
        database_url=postgres_url,
        storage_url=(tmp_path / "store").as_uri(),
        poll_seconds=POLL_SECONDS,
    )
    worker = Worker(settings)
    thread = start(worker, max_jobs=2)
    wait_for(lambda: len(listeners(postgres_url)) == 1, "the worker to LISTEN")
    first = submit_and_time_pickup(postgres_url, owner_id)

    [pid] = listeners(postgres_url)
    terminate(postgres_url, pid)
    wait_for(lambda: listeners(postgres_url) not in ([], [pid]), "the worker to LISTEN again")
    second = submit_and_time_pickup(postgres_url, owner_id)

    thread.join(WAIT_SECONDS)
    assert not thread.is_alive()
    print(f"pickup after NOTIFY: {first * 1000:.0f} ms, after a reconnect {second * 1000:.0f} ms")
