"""Helpers shared by the worker and reliability tests: a small iris spec, jobs
inserted as the API would (normalized spec), rows read back, bounded waits."""

from __future__ import annotations

import threading
import time
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from sqlalchemy import select

from service.db.engine import session_factory, transaction
from service.db.models import Job, JobEpoch
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


def start(worker: Worker, max_jobs: int = 1) -> threading.Thread:
    thread = threading.Thread(target=worker.run, kwargs={"max_jobs": max_jobs}, daemon=True)
    thread.start()
    return thread
