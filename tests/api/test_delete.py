"""DELETE /v1/jobs/{id}: a job that ended goes with its rows and its files."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select, update

from fitq.service.db.engine import transaction
from fitq.service.db.models import (
    CANCELLED,
    EVENT_STATUS,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Base,
    ExecutionLog,
    Job,
    JobEpoch,
    JobEvent,
    JobTag,
    Sweep,
    SweepTrial,
    utcnow,
)
from fitq.service.store import ArtifactStore, keys
from tests.api.conftest import Api
from tests.conftest import SPEC, Owner

pytestmark = pytest.mark.anyio

CHECKPOINT_SHA = "ab" * 32


def _ended_job_with_everything(
    database_url: str, store: ArtifactStore, job_factory: Callable[..., Job], **overrides: Any
) -> str:
    """A succeeded job with a History row, events, an execution-log row, a tag,
    its model and a checkpoint in the store."""
    job_id = job_factory(status=SUCCEEDED, attempt=1, finished_at=utcnow(), **overrides).id
    model = keys.model(job_id, 1)
    with transaction(database_url) as session:
        session.execute(update(Job).where(Job.id == job_id).values(model_key=model))
        session.add_all(
            [
                JobEpoch(
                    job_id=job_id,
                    epoch=1,
                    attempt=1,
                    metrics={"loss": 1.0},
                    seconds=1.0,
                    samples_per_second=10.0,
                ),
                JobEvent(job_id=job_id, kind=EVENT_STATUS, data={"status": SUCCEEDED}),
                ExecutionLog(job_id=job_id, attempt=1, epoch=1, worker_id="w"),
                JobTag(job_id=job_id, tag="t"),
            ]
        )
    store.put_bytes(model, b"model")
    store.put_bytes(keys.checkpoint(job_id, 1, 0, 1, CHECKPOINT_SHA), b"checkpoint")
    return job_id


def _rows_of(database_url: str, job_id: str) -> dict[str, int]:
    """How many rows of each table that references jobs (and jobs) name ``job_id``."""
    counts = {}
    with transaction(database_url) as session:
        for table in Base.metadata.sorted_tables:
            column = table.c.get("job_id") if table.name != "jobs" else table.c.id
            if column is not None:
                counts[table.name] = int(
                    session.scalar(select(func.count()).select_from(table).where(column == job_id))
                    or 0
                )
    return counts


class TestDelete:
    async def test_an_ended_job_goes_with_its_rows_and_files(
        self,
        api: Api,
        database_url: str,
        store: ArtifactStore,
        job_factory: Callable[..., Job],
    ) -> None:
        job_id = _ended_job_with_everything(database_url, store, job_factory)
        before = _rows_of(database_url, job_id)
        assert all(n == 1 for table, n in before.items() if table != "sweep_trials"), before
        r = await api.delete(f"/v1/jobs/{job_id}")
        assert (r.status_code, r.content) == (204, b"")
        assert set(_rows_of(database_url, job_id).values()) == {0}
        assert store.objects(keys.job(job_id)) == []
        assert (await api.get(f"/v1/jobs/{job_id}")).status_code == 404

    @pytest.mark.parametrize("status", [FAILED, CANCELLED])
    async def test_a_failed_or_cancelled_job_goes_too(
        self, api: Api, job_factory: Callable[..., Job], status: str
    ) -> None:
        job = job_factory(status=status, finished_at=utcnow())
        assert (await api.delete(f"/v1/jobs/{job.id}")).status_code == 204

    async def test_a_second_delete_is_404(self, api: Api, job_factory: Callable[..., Job]) -> None:
        job = job_factory(status=SUCCEEDED, finished_at=utcnow())
        first = await api.delete(f"/v1/jobs/{job.id}")
        second = await api.delete(f"/v1/jobs/{job.id}")
        assert (first.status_code, second.status_code) == (204, 404)

    @pytest.mark.parametrize("status", [QUEUED, RUNNING])
    async def test_409_while_it_is_queued_or_running(
        self, api: Api, store: ArtifactStore, job_factory: Callable[..., Job], status: str
    ) -> None:
        job = job_factory(status=status)
        store.put_bytes(keys.checkpoint(job.id, 1, 0, 1, CHECKPOINT_SHA), b"checkpoint")
        r = await api.delete(f"/v1/jobs/{job.id}")
        assert r.status_code == 409
        assert "cancel it first" in r.json()["detail"] and status in r.json()["detail"]
        assert (await api.get(f"/v1/jobs/{job.id}")).json()["status"] == status
        assert len(store.objects(keys.job(job.id))) == 1

    async def test_another_keys_job_is_404_and_stays(
        self, api: Api, job_factory: Callable[..., Job], make_owner: Callable[..., Owner]
    ) -> None:
        theirs = job_factory(status=SUCCEEDED, owner_id=make_owner().id)
        r = await api.delete(f"/v1/jobs/{theirs.id}")
        assert r.status_code == 404
        assert r.json()["detail"] == (await api.delete("/v1/jobs/nosuchjob")).json()[
            "detail"
        ].replace("nosuchjob", theirs.id)

    async def test_unknown_id_is_404(self, api: Api) -> None:
        assert (await api.delete("/v1/jobs/nosuchjob")).status_code == 404

    async def test_without_a_key_is_401(self, api: Api, job_factory: Callable[..., Job]) -> None:
        job = job_factory(status=SUCCEEDED)
        assert (await api.delete(f"/v1/jobs/{job.id}", headers={})).status_code == 401

    async def test_its_idempotency_key_makes_a_new_job_after(
        self, api: Api, job_factory: Callable[..., Job]
    ) -> None:
        headers = {**api.headers, "Idempotency-Key": "k1"}
        first = (await api.post("/v1/jobs", json=SPEC, headers=headers)).json()["id"]
        await api.post(f"/v1/jobs/{first}/cancel")
        assert (await api.delete(f"/v1/jobs/{first}")).status_code == 204
        again = await api.post("/v1/jobs", json=SPEC, headers=headers)
        assert again.status_code == 201 and again.json()["id"] != first


class TestSweepTrial:
    def _sweep(
        self, database_url: str, owner: Owner, job_factory: Callable[..., Job], *statuses: str
    ) -> list[str]:
        with transaction(database_url) as session:
            sweep = Sweep(
                owner_id=owner.id,
                request={},
                metric="val_loss",
                goal="minimize",
                created_at=utcnow(),
            )
            session.add(sweep)
            session.flush()
            sweep_id = sweep.id
        jobs = [job_factory(status=s, sweep_id=sweep_id).id for s in statuses]
        with transaction(database_url) as session:
            session.add_all(
                SweepTrial(job_id=j, sweep_id=sweep_id, number=n, params={})
                for n, j in enumerate(jobs)
            )
        return [sweep_id, *jobs]

    async def test_409_while_its_sweep_runs(
        self, api: Api, database_url: str, owner: Owner, job_factory: Callable[..., Job]
    ) -> None:
        _, done, running = self._sweep(database_url, owner, job_factory, SUCCEEDED, RUNNING)
        r = await api.delete(f"/v1/jobs/{done}")
        assert r.status_code == 409
        assert running in r.json()["detail"] and "sweep" in r.json()["detail"]

    async def test_once_the_sweep_ended_it_goes_and_the_sweep_counts_drop_it(
        self, api: Api, database_url: str, owner: Owner, job_factory: Callable[..., Job]
    ) -> None:
        sweep_id, done, failed = self._sweep(database_url, owner, job_factory, SUCCEEDED, FAILED)
        assert (await api.delete(f"/v1/jobs/{failed}")).status_code == 204
        sweep = (await api.get(f"/v1/sweeps/{sweep_id}")).json()
        assert sweep["status"] == "succeeded"
        trials = (await api.get(f"/v1/sweeps/{sweep_id}/trials")).json()["items"]
        assert [t["job_id"] for t in trials] == [done]
