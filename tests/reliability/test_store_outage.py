"""The artifact store full for a while (``ENOSPC`` on every write, then not): no job
fails for it. The job it hit goes back to the queue and ends ``succeeded`` once the
store recovers; the worker pauses its claims meanwhile, so no other queued job meets
the outage and fails; what the job's events say of it names no server path."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from fitq.service.db.engine import session_factory
from fitq.service.db.models import EVENT_STATUS, TERMINAL_STATUSES, Job, JobEvent
from fitq.service.settings import Settings
from fitq.worker.runner import Worker
from tests.reliability.harness import DEADLINE_SECONDS, iris_spec, record
from tests.support.faults import FullStore
from tests.support.rows import epochs_of, job_rows, submit
from tests.support.waits import wait_for
from tests.worker.helpers import start

JOBS = 3
EPOCHS = 3
FULL_WRITES = 3
"""Writes that fail: the first job's epoch-2 checkpoint, three times over."""


def status_events(url: str, job_id: str) -> list[dict[str, object]]:
    with session_factory(url)() as session:
        return list(
            session.scalars(
                select(JobEvent.data)
                .where(JobEvent.job_id == job_id, JobEvent.kind == EVENT_STATUS)
                .order_by(JobEvent.id)
            )
        )


def store_backs(url: str, job_id: str) -> list[dict[str, object]]:
    """The job's hand-backs for the store (their status events)."""
    return [e for e in status_events(url, job_id) if e.get("reason") == "store"]


def run_through_the_outage(
    settings: Settings, owner_id: str
) -> tuple[list[str], dict[str, Job], FullStore, float]:
    """``JOBS`` jobs and one worker over a store whose writes fail ``FULL_WRITES`` times
    (after the first one): (ids, their ended rows, the store, seconds from its
    recovery to the last job's end). Every job succeeded, each epoch recorded once,
    and what the store's failures left in the events names neither path nor store."""
    url = settings.resolved_database_url
    ids = [
        submit(url, owner_id, iris_spec(seed=i, epochs=EPOCHS, batch_size=16)) for i in range(JOBS)
    ]
    store = FullStore(settings.resolved_storage_url, writes=FULL_WRITES, after=1)
    worker = Worker(settings.model_copy(update={"poll_seconds": 0.05}), store=store)
    thread = start(worker, max_jobs=JOBS + FULL_WRITES)  # each hand-back counts as a run

    def ended_rows() -> dict[str, Job] | None:
        rows = job_rows(url, ids)
        return rows if all(r.status in TERMINAL_STATUSES for r in rows.values()) else None

    rows = wait_for(ended_rows, "every job ended", timeout=DEADLINE_SECONDS)
    ended = time.monotonic()
    worker.stop.set()
    thread.join(DEADLINE_SECONDS)
    assert not thread.is_alive()

    assert {job_id: row.status for job_id, row in rows.items()} == dict.fromkeys(ids, "succeeded")
    assert len(store.failed_at) == FULL_WRITES
    backs = [event for job_id in ids for event in store_backs(url, job_id)]
    assert [e["status"] for e in backs] == ["queued"] * FULL_WRITES
    for job_id in ids:
        assert rows[job_id].error is None
        assert epochs_of(url, job_id) == list(range(1, EPOCHS + 1))
    for event in backs:
        text = str(event["error"])
        assert text == "the artifact store failed: no space left on device (ENOSPC)"
        assert store.root not in text
    return ids, rows, store, ended - store.failed_at[-1]


def test_a_full_store_fails_no_job_and_the_job_it_hit_succeeds_after(
    database_url: str, backend: str, owner_id: str, settings: Settings
) -> None:
    """One job at a time: the job the outage hit goes back each time, and the worker
    pauses its claims, so the other jobs are claimed once, after the store recovered."""
    ids, rows, store, recovered = run_through_the_outage(
        settings.model_copy(update={"pack_max": 1}), owner_id
    )
    assert rows[ids[0]].attempt == 1 + FULL_WRITES
    assert len(store_backs(database_url, ids[0])) == FULL_WRITES
    for job_id in ids[1:]:
        assert rows[job_id].attempt == 1
    record(
        "store full, then recovered",
        backend,
        jobs=JOBS,
        workers=1,
        kills=0,
        lost=0,
        duplicated_epochs=0,
        failed=0,
        failed_writes=FULL_WRITES,
        outage_seconds=round(store.failed_at[-1] - store.failed_at[0], 2),
        succeeded_after_seconds=round(recovered, 2),
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_in_a_pack_the_members_it_hit_go_back_and_all_succeed(
    database_url: str, owner_id: str, settings: Settings
) -> None:
    """Packed: the members whose checkpoints failed leave the pack for the queue, the
    pack claims no more, and every job still ends ``succeeded``."""
    run_through_the_outage(settings, owner_id)
