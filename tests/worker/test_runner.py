"""The worker against a real database and a real file store: it trains,
reports every epoch once, fails a bad job without dying, stops at a step
boundary on cancel or shutdown, and a handed-back job resumes exactly."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import torch
from safetensors.torch import load as load_safetensors
from sqlalchemy import select

from service import queue
from service.db.engine import session_factory, transaction
from service.db.models import ApiKey, Job, JobEpoch
from service.settings import Settings
from service.spec import parse_spec
from service.store import ArtifactStore
from worker.runner import Worker

WAIT_SECONDS = 60


def iris_spec(**fit: Any) -> dict[str, Any]:
    return {
        "model": {
            "input_dim": 4,
            "layers": [
                {"type": "dense", "units": 16, "activation": "relu"},
                {"type": "dropout", "rate": 0.1},
                {"type": "dense", "units": 3, "activation": "softmax"},
            ],
        },
        "compile": {
            "optimizer": "adam",
            "loss": "sparse_categorical_crossentropy",
            "metrics": ["accuracy"],
        },
        "fit": {"epochs": 3, "batch_size": 16, "normalize": True, **fit},
        "seed": 7,
        "dataset_id": "iris",
    }


@pytest.fixture
def owner_id(database_url: str, make_key: Any) -> str:
    make_key("worker-owner")
    with session_factory(database_url)() as session:
        found = session.scalar(select(ApiKey.id).where(ApiKey.name == "worker-owner"))
    assert found is not None
    return found


def submit(url: str, owner_id: str, spec: dict[str, Any]) -> str:
    normalized = parse_spec(spec).model_dump(mode="json")
    with transaction(url) as session:
        job = Job(
            owner_id=owner_id,
            spec=normalized,
            dataset_id=normalized["dataset_id"],
            test_dataset_id=normalized.get("test_dataset_id"),
            epochs=normalized["fit"]["epochs"],
            max_attempts=normalized.get("max_attempts", 3),
        )
        session.add(job)
        session.flush()
        return job.id


def job_row(url: str, job_id: str) -> Job:
    with session_factory(url)() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def epochs_of(url: str, job_id: str) -> list[int]:
    with session_factory(url)() as session:
        return list(
            session.scalars(
                select(JobEpoch.epoch).where(JobEpoch.job_id == job_id).order_by(JobEpoch.epoch)
            )
        )


def model_tensors(settings: Settings, job_id: str) -> dict[str, torch.Tensor]:
    job = job_row(settings.resolved_database_url, job_id)
    assert job.model_key is not None
    return load_safetensors(ArtifactStore(settings.resolved_storage_url).get_bytes(job.model_key))


def wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class TestTraining:
    def test_a_job_trains_to_success_with_every_epoch_once(
        self, settings: Settings, owner_id: str
    ) -> None:
        url = settings.resolved_database_url
        job_id = submit(url, owner_id, {**iris_spec(), "test_dataset_id": "iris"})
        assert Worker(settings).run(max_jobs=1) == 1
        job = job_row(url, job_id)
        assert job.status == "succeeded", job.error
        assert epochs_of(url, job_id) == [1, 2, 3]
        assert job.metrics is not None and {"loss", "accuracy"} <= set(job.metrics)
        assert job.test_metrics is not None and 0.0 <= job.test_metrics["accuracy"] <= 1.0
        tensors = model_tensors(settings, job_id)
        assert tensors["layers.0.kernel"].shape == (4, 16)
        assert tensors["layers.2.bias"].shape == (3,)

    def test_a_diverging_job_fails_with_where_and_the_worker_goes_on(
        self, settings: Settings, owner_id: str
    ) -> None:
        url = settings.resolved_database_url
        bad = iris_spec()
        bad["compile"] = {"optimizer": {"name": "sgd", "learning_rate": 1e30}, "loss": "mse"}
        bad["model"]["layers"][-1] = {"type": "dense", "units": 1}
        bad["dataset_id"] = "diabetes"
        bad["model"]["input_dim"] = 10
        bad["fit"]["normalize"] = False
        bad_id = submit(url, owner_id, bad)
        good_id = submit(url, owner_id, iris_spec())
        assert Worker(settings).run(max_jobs=2) == 2
        failed = job_row(url, bad_id)
        assert failed.status == "failed"
        assert failed.error is not None and "epoch" in failed.error and "step" in failed.error
        assert job_row(url, good_id).status == "succeeded"


def start(worker: Worker, max_jobs: int = 1) -> threading.Thread:
    thread = threading.Thread(target=worker.run, kwargs={"max_jobs": max_jobs}, daemon=True)
    thread.start()
    return thread


class TestStopping:
    def test_cancel_stops_a_running_job_at_a_step_boundary(
        self, settings: Settings, owner_id: str
    ) -> None:
        url = settings.resolved_database_url
        job_id = submit(url, owner_id, iris_spec(epochs=10_000, batch_size=1))
        worker = Worker(settings)
        thread = start(worker)
        wait_for(lambda: job_row(url, job_id).step > 0, "training to start")
        with transaction(url) as session:
            queue.request_cancel(session, job_id)
        thread.join(WAIT_SECONDS)
        assert not thread.is_alive()
        assert job_row(url, job_id).status == "cancelled"

    def test_shutdown_hands_back_and_the_resumed_run_equals_an_uninterrupted_one(
        self, settings: Settings, owner_id: str
    ) -> None:
        url = settings.resolved_database_url
        spec = iris_spec(epochs=6, batch_size=4)
        reference_id = submit(url, owner_id, spec)
        Worker(settings).run(max_jobs=1)
        assert job_row(url, reference_id).status == "succeeded"

        job_id = submit(url, owner_id, spec)
        first = Worker(settings, worker_id="first")
        thread = start(first)
        wait_for(lambda: job_row(url, job_id).epoch >= 2, "two epochs")
        first.stop.set()
        thread.join(WAIT_SECONDS)
        handed_back = job_row(url, job_id)
        assert handed_back.status == "queued"
        assert handed_back.checkpoint_key is not None

        Worker(settings, worker_id="second").run(max_jobs=1)
        resumed = job_row(url, job_id)
        assert (resumed.status, resumed.attempt) == ("succeeded", 2)
        assert epochs_of(url, job_id) == [1, 2, 3, 4, 5, 6]
        ours, reference = model_tensors(settings, job_id), model_tensors(settings, reference_id)
        assert ours.keys() == reference.keys()
        for name in ours:
            assert torch.equal(ours[name], reference[name]), name
        assert resumed.metrics == job_row(url, reference_id).metrics
