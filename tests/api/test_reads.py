"""The read paths of a job agree (one read model, ``service/jobs/read.py``): the
hot read routes (``service/api/reads.py``), the ORM path of the listing and the
event stream's progress snapshots; and the hot reads take no write lock on SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from fitq.service.api import sse
from fitq.service.db.engine import engine_for, transaction
from fitq.service.db.models import (
    EVENT_STATUS,
    QUEUED,
    RUNNING,
    Job,
    JobEpoch,
    JobEvent,
    Sweep,
    utcnow,
)
from tests.conftest import Owner

pytestmark = pytest.mark.anyio


@pytest.fixture
def running_job(database_url: str, job_factory: Callable[..., Job]) -> Job:
    """A running job two epochs into five, mid-way through its third, with its
    status history (queued, running) and the History of its two epochs."""
    started = utcnow() - timedelta(seconds=30)
    job = job_factory(
        status=RUNNING,
        epochs=5,
        epoch=3,
        step=4,
        steps=10,
        started_at=started,
        metrics={"loss": 0.5, "accuracy": 0.8},
        phase="training",
    )
    with transaction(database_url) as session:
        for status, attempt, at in ((QUEUED, 0, job.created_at), (RUNNING, 1, started)):
            session.add(
                JobEvent(
                    job_id=job.id,
                    kind=EVENT_STATUS,
                    data={"status": status, "attempt": attempt},
                    created_at=at,
                )
            )
        for epoch, seconds in ((1, 2.0), (2, 3.0)):
            session.add(
                JobEpoch(
                    job_id=job.id,
                    epoch=epoch,
                    attempt=1,
                    metrics={"loss": 1.0 / epoch, "accuracy": 0.4 * epoch},
                    seconds=seconds,
                    samples_per_second=100.0,
                )
            )
    return job


async def test_job_read_matches_the_listing(
    client: httpx.AsyncClient, owner: Owner, running_job: Job
) -> None:
    """The listing builds the resource through the ORM; the read route through
    its own statements: every field, status history and ETA included, agrees."""
    read = await client.get(f"/v1/jobs/{running_job.id}", headers=owner.headers)
    listed = await client.get("/v1/jobs", headers=owner.headers)
    assert read.status_code == 200, read.text
    assert read.headers["content-type"] == "application/json"
    body: dict[str, Any] = read.json()
    assert body == listed.json()["items"][0]
    assert [change["status"] for change in body["status_history"]] == [QUEUED, RUNNING]
    # Two and 0.6 epochs left at the mean measured 2.5 s per epoch.
    assert body["eta_seconds"] == pytest.approx(6.5)


@pytest.mark.parametrize(("pack_size", "pack"), [(3, {"id": "p1", "size": 3}), (1, None)])
async def test_sweep_and_pack_agree(
    client: httpx.AsyncClient,
    database_url: str,
    owner: Owner,
    job_factory: Callable[..., Job],
    pack_size: int,
    pack: dict[str, Any] | None,
) -> None:
    """A trial of a sweep that trains in a pack: both read paths say so, and a
    pack of one is no pack."""
    with transaction(database_url) as session:
        sweep = Sweep(owner_id=owner.id, request={}, metric="loss", goal="minimize")
        session.add(sweep)
        session.flush()
        sweep_id = sweep.id
    job = job_factory(status=RUNNING, sweep_id=sweep_id, pack_id="p1", pack_size=pack_size)
    read = (await client.get(f"/v1/jobs/{job.id}", headers=owner.headers)).json()
    listed = (await client.get(f"/v1/jobs?sweep_id={sweep_id}", headers=owner.headers)).json()
    assert read == listed["items"][0]
    assert (read["sweep_id"], read["pack"]) == (sweep_id, pack)


async def test_the_event_streams_progress_agrees(
    client: httpx.AsyncClient, database_url: str, owner: Owner, running_job: Job
) -> None:
    """The ``progress`` snapshot of ``GET /v1/jobs/{id}/events`` is the same read
    model cut down: each of its fields is the resource's."""
    body = (await client.get(f"/v1/jobs/{running_job.id}", headers=owner.headers)).json()
    poll = sse.job_reader(engine_for(database_url), running_job.id)
    assert poll(0, set()).progress == {
        "job_id": body["id"],
        "status": body["status"],
        "phase": body["phase"],
        "attempt": body["attempt"],
        "device": body["device"],
        **body["progress"],
        "eta_seconds": body["eta_seconds"],
    }
    assert body["eta_seconds"] is not None


async def test_history_after(client: httpx.AsyncClient, owner: Owner, running_job: Job) -> None:
    every = await client.get(f"/v1/jobs/{running_job.id}/metrics", headers=owner.headers)
    later = await client.get(f"/v1/jobs/{running_job.id}/metrics?after=1", headers=owner.headers)
    assert [e["epoch"] for e in every.json()["epochs"]] == [1, 2]
    assert later.json()["epochs"] == every.json()["epochs"][1:]
    assert every.json()["epochs"][0]["loss"] == 1.0


async def test_a_job_without_epochs_has_an_empty_history(
    client: httpx.AsyncClient, owner: Owner, job_factory: Callable[..., Job]
) -> None:
    job = job_factory()
    response = await client.get(f"/v1/jobs/{job.id}/metrics", headers=owner.headers)
    assert response.status_code == 200
    assert response.json() == {"epochs": []}


@pytest.mark.parametrize("suffix", ["", "/metrics"])
async def test_key_and_owner_checks(
    client: httpx.AsyncClient,
    owner: Owner,
    make_owner: Callable[..., Owner],
    running_job: Job,
    suffix: str,
) -> None:
    path = f"/v1/jobs/{running_job.id}{suffix}"
    other = await client.get(path, headers=make_owner().headers)
    assert other.status_code == 404
    assert other.json()["detail"] == f"no job with id {running_job.id!r}"
    missing = await client.get(f"/v1/jobs/nope{suffix}", headers=owner.headers)
    assert missing.status_code == 404
    for headers in ({}, {"Authorization": "Bearer fitq_wrong"}, {"Authorization": "Basic x"}):
        refused = await client.get(path, headers=headers)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_reads_take_no_write_lock(
    client: httpx.AsyncClient, database_url: str, owner: Owner, running_job: Job
) -> None:
    """A status poll must not queue behind a writer (every SQLite transaction
    here begins IMMEDIATE, which takes the write lock)."""
    writer = sqlite3.connect(str(make_url(database_url).database), isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        read = await client.get(f"/v1/jobs/{running_job.id}", headers=owner.headers)
        history = await client.get(f"/v1/jobs/{running_job.id}/metrics", headers=owner.headers)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert (read.status_code, history.status_code) == (200, 200)
