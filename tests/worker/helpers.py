"""Helpers shared by the worker and reliability tests: a small iris spec, jobs
submitted through the API's own path, rows read back, bounded waits."""

from __future__ import annotations

import threading
import time
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from sqlalchemy import select

from fitq.service import jobs
from fitq.service.db.engine import session_factory, transaction
from fitq.service.db.models import Job, JobEpoch
from fitq.service.settings import Settings
from fitq.service.store import ArtifactStore
from fitq.worker.runner import Worker

WAIT_SECONDS = 60


def iris_spec(seed: int = 7, epochs: int = 3, batch_size: int = 16, **fit: Any) -> dict[str, Any]:
    """A small job on the iris built-in (dense 16 relu, dropout, softmax 3)."""
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
        "fit": {"epochs": epochs, "batch_size": batch_size, "normalize": True, **fit},
        "seed": seed,
        "dataset_id": "iris",
    }


def submit(url: str, owner_id: str, spec: dict[str, Any]) -> str:
    """Queue ``spec`` through the API's own submission path (validation included)."""
    with transaction(url) as session:
        job, _ = jobs.submit(session, owner_id, spec)
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
