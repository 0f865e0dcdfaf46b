"""POST /v1/jobs/{id}/evaluate: Keras' evaluate of a trained model on a stored
dataset, equal to what the worker reports as the job's test_metrics on the same data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fitq.service.db.models import Job
from fitq.service.store import ArtifactStore
from tests.api.conftest import Api, Upload, npz_bytes
from tests.api.trained_models import Trained, train_job

pytestmark = pytest.mark.anyio


@pytest.fixture
def trained(store: ArtifactStore, job_factory: Callable[..., Job]) -> Trained:
    return train_job(store, job_factory)


async def evaluate(api: Api, job: Job, dataset_id: str, **kw: Any) -> Any:
    return await api.post(f"/v1/jobs/{job.id}/evaluate", json={"dataset_id": dataset_id}, **kw)


class TestEvaluate:
    async def test_equals_the_jobs_test_metrics_on_its_test_data(
        self, api: Api, trained: Trained
    ) -> None:
        r = await evaluate(api, trained.job, "iris")
        assert r.status_code == 200, r.text
        metrics = r.json()["metrics"]
        assert set(metrics) == {"loss", "accuracy"}
        assert metrics == pytest.approx(trained.job.test_metrics, rel=1e-6, abs=1e-9)

    async def test_an_uploaded_dataset_is_evaluated_again_and_again(
        self, api: Api, trained: Trained, upload: Upload
    ) -> None:
        x, y = trained.x[::3], trained.y[::3]
        up = await upload("part.npz", npz_bytes(x, y.astype(np.int64)), task="classification")
        assert up.status_code == 201, up.text
        first = await evaluate(api, trained.job, up.json()["id"])
        second = await evaluate(api, trained.job, up.json()["id"])
        assert first.status_code == 200, first.text
        assert first.json() == second.json()
        expected = trained.trainer.evaluate(x, y)
        assert first.json()["metrics"] == pytest.approx(expected, rel=1e-6, abs=1e-9)


class TestRefusals:
    async def test_before_success_is_409(self, api: Api, job_factory: Callable[..., Job]) -> None:
        r = await evaluate(api, job_factory(status="running"), "iris")
        assert r.status_code == 409, r.text

    async def test_a_dataset_of_other_features_is_422_naming_it(
        self, api: Api, trained: Trained
    ) -> None:
        r = await evaluate(api, trained.job, "digits")
        assert r.status_code == 422, r.text
        assert r.json()["loc"] == ["body", "dataset_id"]
        assert "64 features" in r.json()["detail"]

    async def test_more_classes_than_outputs_is_422(
        self, api: Api, trained: Trained, upload: Upload
    ) -> None:
        y = np.arange(len(trained.x)) % 5
        up = await upload("five.npz", npz_bytes(trained.x, y), task="classification")
        assert up.status_code == 201, up.text
        r = await evaluate(api, trained.job, up.json()["id"])
        assert r.status_code == 422, r.text
        assert "5 classes" in r.json()["detail"]

    async def test_another_owners_dataset_is_404(
        self, api: Api, trained: Trained, upload: Upload, make_owner: Callable[..., Any]
    ) -> None:
        other = make_owner("other")
        up = await upload(
            "theirs.npz",
            npz_bytes(trained.x, trained.y),
            headers=other.headers,
            task="classification",
        )
        assert up.status_code == 201, up.text
        r = await evaluate(api, trained.job, up.json()["id"])
        assert r.status_code == 404, r.text

    async def test_another_owners_job_is_404(
        self, api: Api, trained: Trained, make_owner: Callable[..., Any]
    ) -> None:
        r = await evaluate(api, trained.job, "iris", headers=make_owner("other").headers)
        assert r.status_code == 404

    async def test_a_body_without_dataset_id_is_422(self, api: Api, trained: Trained) -> None:
        r = await api.post(f"/v1/jobs/{trained.job.id}/evaluate", json={})
        assert r.status_code == 422
