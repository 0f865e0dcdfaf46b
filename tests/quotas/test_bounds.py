"""What an operator bounds in a job: priority (FITQ_MAX_PRIORITY), attempts
(FITQ_MAX_ATTEMPTS) and run time (the spec's max_seconds, at most
FITQ_MAX_JOB_SECONDS): 422s at submit naming the bound, and a job failed at the
step boundary past its run time."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from fitq.service.db.engine import transaction
from fitq.service.db.models import Job, utcnow
from fitq.service.settings import Settings
from fitq.worker.runner import Worker
from tests.api.conftest import Api, Stored
from tests.conftest import SPEC
from tests.support.rows import job_row, submit
from tests.support.specs import iris_spec


def spec(**top: Any) -> dict[str, Any]:
    body = copy.deepcopy(SPEC)
    body.update(top)
    return body


class TestAtSubmit:
    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        bounds = {"max_priority": 10, "max_attempts": 4, "max_job_seconds": 3600}
        return settings.model_copy(update=bounds)

    @pytest.mark.parametrize(
        ("field", "over", "at", "setting"),
        [
            ("priority", 11, 10, "FITQ_MAX_PRIORITY"),
            ("max_attempts", 5, 4, "FITQ_MAX_ATTEMPTS"),
            ("max_seconds", 3601, 3600, "FITQ_MAX_JOB_SECONDS"),
        ],
    )
    async def test_over_the_bound_is_a_422_naming_it(
        self,
        api: Api,
        stored: Callable[[], Stored],
        field: str,
        over: int,
        at: int,
        setting: str,
    ) -> None:
        before = stored()
        r = await api.post("/v1/jobs", json=spec(**{field: over}))
        assert r.status_code == 422, r.text
        assert r.json()["loc"] == ["body", field]
        assert r.json()["detail"] == (
            f"{field} must be ≤ {at}, the service's limit {setting} (got {over})"
        )
        assert stored() == before
        assert (await api.post("/v1/jobs", json=spec(**{field: at}))).status_code == 201

    async def test_the_defaults_leave_the_specs_own_bounds(self, api: Api) -> None:
        r = await api.post("/v1/jobs", json=spec(priority=-100, max_attempts=1))
        assert r.status_code == 201, r.text
        assert r.json()["spec"]["max_seconds"] is None


class TestRunTime:
    """The worker fails a job past its run time, counted from its first start (a
    job first started two hours ago, then handed back, is resumed here)."""

    def started_long_ago(self, url: str, job_id: str) -> None:
        with transaction(url) as session:
            session.execute(
                update(Job).where(Job.id == job_id).values(started_at=utcnow() - timedelta(hours=2))
            )

    @pytest.mark.parametrize("pack_max", [1, None], ids=["solo", "packed"])
    def test_max_seconds_fails_the_job_and_the_worker_goes_on(
        self, settings: Settings, owner_id: str, pack_max: int | None
    ) -> None:
        settings = settings.model_copy(update={"pack_max": pack_max})
        url = settings.resolved_database_url
        late = submit(url, owner_id, {**iris_spec(epochs=50), "max_seconds": 3600})
        self.started_long_ago(url, late)
        fine = submit(url, owner_id, {**iris_spec(), "max_seconds": 3600})
        assert Worker(settings).run(max_jobs=2) == 2
        failed = job_row(url, late)
        assert failed.status == "failed", failed.error
        assert failed.error == (
            "the job ran past its run time of 3600 s (max_seconds), counted from its first "
            "start; stopped at epoch 1, step 1"
        )
        assert job_row(url, fine).status == "succeeded"

    def test_the_service_ceiling_applies_without_max_seconds(
        self, settings: Settings, owner_id: str
    ) -> None:
        url = settings.resolved_database_url
        job_id = submit(url, owner_id, iris_spec())
        self.started_long_ago(url, job_id)
        ceiling = settings.model_copy(update={"max_job_seconds": 60, "pack_max": 1})
        assert Worker(ceiling).run(max_jobs=1) == 1
        error = job_row(url, job_id).error
        assert error is not None and "run time of 60 s (FITQ_MAX_JOB_SECONDS)" in error


class TestSweepTrials:
    """A sweep's trials are bounded as jobs are (``submission.validate``)."""

    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"max_training_bytes": 1_000_000, "max_priority": 0})

    async def test_a_trial_over_the_training_memory_limit_is_refused(
        self, api: Api, stored: Callable[[], Stored]
    ) -> None:
        from tests.sweeps.conftest import sweep_body

        before = stored()
        body = sweep_body(parameters={"model.layers.0.units": {"values": [4, 20_000]}})
        r = await api.post("/v1/sweeps", json=body)
        assert r.status_code == 422, r.text
        assert "model.layers.0.units=20000" in r.json()["detail"]
        assert "FITQ_MAX_TRAINING_BYTES" in r.json()["detail"]
        assert stored() == before

    async def test_a_trial_over_the_priority_bound_is_refused(self, api: Api) -> None:
        from tests.sweeps.conftest import sweep_body

        body = sweep_body()
        body["spec"]["priority"] = 1
        r = await api.post("/v1/sweeps", json=body)
        assert r.status_code == 422, r.text
        assert "FITQ_MAX_PRIORITY" in r.json()["detail"]
