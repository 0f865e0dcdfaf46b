"""/v1/jobs: submit (Idempotency-Key included), list, read, History, cancel, model."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from fitq.service.db.engine import session_factory, transaction
from fitq.service.db.models import (
    CANCELLED,
    FAILED,
    JOB_STATUSES,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Job,
    JobEpoch,
    utcnow,
)
from fitq.service.store import ArtifactStore
from tests.api.conftest import Api, Stored, Upload, csv_bytes
from tests.conftest import SPEC, Owner

pytestmark = pytest.mark.anyio

# SPEC §2's example, on the digits built-in (64 features, 10 classes).
EXAMPLE: dict[str, Any] = {
    "model": {
        "input_dim": 64,
        "layers": [
            {"type": "dense", "units": 128, "activation": "relu"},
            {"type": "dropout", "rate": 0.2},
            {"type": "dense", "units": 64, "activation": "relu"},
            {"type": "dense", "units": 10, "activation": "softmax"},
        ],
    },
    "compile": {
        "optimizer": {"name": "adam", "learning_rate": 0.001},
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy"],
    },
    "fit": {
        "epochs": 10,
        "batch_size": 32,
        "validation_split": 0.1,
        "shuffle": True,
        "early_stopping": {"monitor": "val_loss", "patience": 3},
    },
    "seed": 0,
    "dataset_id": "digits",
    "validation_dataset_id": None,
    "test_dataset_id": "digits",
    "priority": 0,
    "name": "mnist-mlp",
}


def spec(**overrides: Any) -> dict[str, Any]:
    body = copy.deepcopy(SPEC)
    body.update(overrides)
    return body


def count_jobs(url: str) -> int:
    with session_factory(url)() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


class TestSubmit:
    async def test_the_spec_example_on_digits(self, api: Api, database_url: str) -> None:
        r = await api.post("/v1/jobs", json=EXAMPLE)
        assert r.status_code == 201, r.text
        job = r.json()
        assert r.headers["location"] == f"/v1/jobs/{job['id']}"
        assert job["status"] == "queued" and job["name"] == "mnist-mlp"
        assert job["progress"] == {"epoch": 0, "epochs": 10, "step": 0, "steps": None}
        assert (job["attempt"], job["max_attempts"], job["priority"]) == (0, 3, 0)
        assert job["metrics"] is None and job["error"] is None and job["finished_at"] is None
        assert job["spec"]["compile"]["optimizer"]["beta_1"] == 0.9, "stored normalized"
        assert job["test_dataset_id"] == "digits"
        assert count_jobs(database_url) == 1

    async def test_on_a_digits_shaped_upload(self, api: Api, upload: Upload) -> None:
        ds = (await upload("digits.csv", csv_bytes(n_rows=60, n_features=64, n_classes=10))).json()
        r = await api.post("/v1/jobs", json={**EXAMPLE, "dataset_id": ds["id"]})
        assert r.status_code == 201, r.text
        assert r.json()["dataset_id"] == ds["id"]

    async def test_priority_and_attempts_come_from_the_spec(self, api: Api) -> None:
        r = await api.post("/v1/jobs", json=spec(priority=5, max_attempts=2, name="p"))
        assert r.status_code == 201, r.text
        assert (r.json()["priority"], r.json()["max_attempts"], r.json()["name"]) == (5, 2, "p")

    async def test_epochs_over_the_server_limit_are_422(
        self, api: Api, settings: Any, database_url: str
    ) -> None:
        r = await api.post("/v1/jobs", json=spec(fit={"epochs": settings.max_epochs + 1}))
        assert r.status_code == 422
        assert "epochs" in r.json()["detail"]
        assert count_jobs(database_url) == 0


class TestIdempotency:
    async def test_the_same_key_and_body_return_the_same_job(
        self, api: Api, database_url: str
    ) -> None:
        headers = {**api.headers, "Idempotency-Key": "k1"}
        first = await api.post("/v1/jobs", json=spec(), headers=headers)
        again = await api.post("/v1/jobs", json=spec(), headers=headers)
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["location"] == first.headers["location"]
        assert count_jobs(database_url) == 1

    async def test_key_order_in_the_body_does_not_matter(self, api: Api) -> None:
        headers = {**api.headers, "Idempotency-Key": "k1"}
        body = spec()
        first = await api.post("/v1/jobs", json=body, headers=headers)
        again = await api.post("/v1/jobs", json=dict(reversed(body.items())), headers=headers)
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]

    async def test_the_same_key_with_another_body_is_409(
        self, api: Api, stored: Callable[[], Stored]
    ) -> None:
        headers = {**api.headers, "Idempotency-Key": "k1"}
        first = await api.post("/v1/jobs", json=spec(), headers=headers)
        before = stored()
        r = await api.post("/v1/jobs", json=spec(seed=1), headers=headers)
        assert r.status_code == 409
        assert "Idempotency-Key" in r.json()["detail"]
        assert first.json()["id"] in r.json()["detail"]
        assert stored() == before

    async def test_keys_are_per_owner(self, api: Api, make_owner: Callable[..., Owner]) -> None:
        other = make_owner("other")
        mine = await api.post(
            "/v1/jobs", json=spec(), headers={**api.headers, "Idempotency-Key": "k"}
        )
        theirs = await api.post(
            "/v1/jobs", json=spec(), headers={**other.headers, "Idempotency-Key": "k"}
        )
        assert (mine.status_code, theirs.status_code) == (201, 201)
        assert mine.json()["id"] != theirs.json()["id"]

    async def test_concurrent_submissions_with_one_key_make_one_job(
        self, api: Api, database_url: str
    ) -> None:
        headers = {**api.headers, "Idempotency-Key": "race"}
        # More than the API's threads (FITQ_API_THREADS): the first insert's transaction
        # must commit without waiting for one, or the other submissions, blocked on its
        # lock, starve it (see deps.get_session).
        submissions = 50
        responses = await asyncio.gather(
            *(api.post("/v1/jobs", json=spec(), headers=headers) for _ in range(submissions))
        )
        codes = sorted(r.status_code for r in responses)
        assert codes == [200] * (submissions - 1) + [201], [
            r.text for r in responses if r.status_code >= 300
        ]
        assert len({r.json()["id"] for r in responses}) == 1
        assert count_jobs(database_url) == 1


class TestList:
    async def test_newest_first(self, api: Api, job_factory: Callable[..., Job]) -> None:
        now = utcnow()
        ids = [job_factory(created_at=now + timedelta(seconds=i)).id for i in range(3)]
        page = (await api.get("/v1/jobs")).json()
        assert [j["id"] for j in page["items"]] == ids[::-1]
        assert page["next_cursor"] is None

    async def test_status_filter(self, api: Api, job_factory: Callable[..., Job]) -> None:
        made = {status: job_factory(status=status).id for status in JOB_STATUSES}
        for status, job_id in made.items():
            page = (await api.get("/v1/jobs", params={"status": status})).json()
            assert [j["id"] for j in page["items"]] == [job_id]

    async def test_an_unknown_status_is_422(self, api: Api) -> None:
        r = await api.get("/v1/jobs", params={"status": "done"})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["query", "status", 0]  # status= may repeat

    @pytest.mark.parametrize("limit", [1, 3, 7])
    async def test_the_cursor_covers_every_job_once(
        self, api: Api, job_factory: Callable[..., Job], limit: int
    ) -> None:
        now = utcnow()
        # ties on created_at are ordered by id
        ids = [job_factory(created_at=now + timedelta(seconds=i // 3)).id for i in range(10)]
        expected = [
            j for _, j in sorted(((i // 3, jid) for i, jid in enumerate(ids)), reverse=True)
        ]
        seen: list[str] = []
        cursor = None
        for _ in range(20):
            params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
            page = (await api.get("/v1/jobs", params=params)).json()
            seen += [j["id"] for j in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == expected

    @pytest.mark.parametrize("limit", [0, 201, -1])
    async def test_a_limit_out_of_range_is_422(self, api: Api, limit: int) -> None:
        assert (await api.get("/v1/jobs", params={"limit": limit})).status_code == 422

    async def test_a_forged_cursor_is_422(self, api: Api) -> None:
        r = await api.get("/v1/jobs", params={"cursor": "eyJ4IjogMX0"})  # {"x": 1}
        assert r.status_code == 422 and r.json()["loc"] == ["query", "cursor"]


class TestRead:
    async def test_the_job_resource(self, api: Api, job_factory: Callable[..., Job]) -> None:
        job = job_factory(
            status=RUNNING,
            epoch=2,
            step=40,
            steps=100,
            epochs=5,
            metrics={"loss": 0.5, "accuracy": 0.8},
            device="cpu",
            name="n",
        )
        body = (await api.get(f"/v1/jobs/{job.id}")).json()
        assert body["status"] == "running" and body["worker_id"] == "test-worker"
        assert body["progress"] == {"epoch": 2, "epochs": 5, "step": 40, "steps": 100}
        assert body["metrics"] == {"loss": 0.5, "accuracy": 0.8}
        assert (body["attempt"], body["device"], body["name"]) == (1, "cpu", "n")
        assert body["started_at"] is None and body["test_metrics"] is None
        assert body["spec"] == SPEC

    async def test_unknown_id_is_404(self, api: Api) -> None:
        r = await api.get("/v1/jobs/0123456789abcdef0123456789abcdef")
        assert r.status_code == 404 and "no job" in r.json()["detail"]


def add_epochs(url: str, job_id: str, n: int) -> None:
    with transaction(url) as session:
        for epoch in range(1, n + 1):
            session.add(
                JobEpoch(
                    job_id=job_id,
                    epoch=epoch,
                    attempt=1,
                    metrics={"loss": 1.0 / epoch, "accuracy": 0.5 + epoch / 100},
                    seconds=0.5,
                    samples_per_second=1000.0,
                )
            )


class TestHistory:
    async def test_epochs_in_order_with_keras_names(
        self, api: Api, job_factory: Callable[..., Job], database_url: str
    ) -> None:
        job = job_factory()
        add_epochs(database_url, job.id, 3)
        body = (await api.get(f"/v1/jobs/{job.id}/metrics")).json()
        assert [e["epoch"] for e in body["epochs"]] == [1, 2, 3]
        assert body["epochs"][1] == {
            "epoch": 2,
            "loss": 0.5,
            "accuracy": 0.52,
            "val_loss": None,
            "val_accuracy": None,
            "seconds": 0.5,
            "samples_per_second": 1000.0,
        }

    async def test_after_gives_only_later_epochs(
        self, api: Api, job_factory: Callable[..., Job], database_url: str
    ) -> None:
        job = job_factory()
        add_epochs(database_url, job.id, 4)
        for after, expected in [(0, [1, 2, 3, 4]), (2, [3, 4]), (4, []), (9, [])]:
            body = (await api.get(f"/v1/jobs/{job.id}/metrics", params={"after": after})).json()
            assert [e["epoch"] for e in body["epochs"]] == expected

    async def test_extra_metrics_pass_through(
        self, api: Api, job_factory: Callable[..., Job], database_url: str
    ) -> None:
        job = job_factory()
        with transaction(database_url) as session:
            session.add(
                JobEpoch(
                    job_id=job.id,
                    epoch=1,
                    attempt=1,
                    metrics={"loss": 2.0, "mae": 1.5, "val_mae": 1.7},
                    seconds=1.0,
                    samples_per_second=10.0,
                )
            )
        epoch = (await api.get(f"/v1/jobs/{job.id}/metrics")).json()["epochs"][0]
        assert (epoch["mae"], epoch["val_mae"]) == (1.5, 1.7)


class TestCancel:
    async def test_a_queued_job_is_cancelled(
        self, api: Api, job_factory: Callable[..., Job]
    ) -> None:
        job = job_factory()
        r = await api.post(f"/v1/jobs/{job.id}/cancel")
        assert r.status_code == 202
        assert r.json()["status"] == "cancelled" and r.json()["finished_at"] is not None

    async def test_is_idempotent(self, api: Api, job_factory: Callable[..., Job]) -> None:
        job = job_factory()
        first = await api.post(f"/v1/jobs/{job.id}/cancel")
        second = await api.post(f"/v1/jobs/{job.id}/cancel")
        assert (first.status_code, second.status_code) == (202, 202)
        assert second.json()["status"] == "cancelled"
        assert second.json()["finished_at"] == first.json()["finished_at"]

    async def test_a_running_job_is_asked_to_stop(
        self, api: Api, job_factory: Callable[..., Job]
    ) -> None:
        job = job_factory(status=RUNNING)
        r = await api.post(f"/v1/jobs/{job.id}/cancel")
        assert r.status_code == 202
        assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True

    @pytest.mark.parametrize("status", [SUCCEEDED, FAILED, CANCELLED])
    async def test_a_terminal_job_is_untouched(
        self, api: Api, job_factory: Callable[..., Job], status: str
    ) -> None:
        job = job_factory(status=status, finished_at=utcnow())
        before = (await api.get(f"/v1/jobs/{job.id}")).json()
        r = await api.post(f"/v1/jobs/{job.id}/cancel")
        assert r.status_code == 202
        assert r.json() == before


class TestModel:
    @pytest.mark.parametrize("status", [QUEUED, RUNNING, FAILED, CANCELLED])
    async def test_409_until_the_job_succeeded(
        self, api: Api, job_factory: Callable[..., Job], status: str
    ) -> None:
        job = job_factory(status=status)
        r = await api.get(f"/v1/jobs/{job.id}/model")
        assert r.status_code == 409
        assert status in r.json()["detail"]

    async def test_the_safetensors_bytes(
        self, api: Api, job_factory: Callable[..., Job], store: ArtifactStore
    ) -> None:
        job = job_factory(status=SUCCEEDED, name="my model", model_key="jobs/x/model.safetensors")
        store.put_bytes("jobs/x/model.safetensors", b"weights")
        r = await api.get(f"/v1/jobs/{job.id}/model")
        assert r.status_code == 200
        assert r.content == b"weights"
        assert r.headers["content-type"] == "application/octet-stream"
        assert 'filename="my_model.safetensors"' in r.headers["content-disposition"]
