"""Helpers of the worker tests (and tests/deploy's S3 pipeline): a worker run
in a thread of the test, its trained model read back; the jobs, rows and
waits they use come from tests/support."""

from __future__ import annotations

import threading

import torch
from safetensors.torch import load as load_safetensors

from fitq.service.settings import Settings
from fitq.service.store import ArtifactStore
from fitq.worker.runner import Worker
from tests.support.rows import epochs_of, job_row, submit
from tests.support.specs import iris_spec
from tests.support.waits import WAIT_SECONDS, wait_for

__all__ = [
    "WAIT_SECONDS",
    "epochs_of",
    "iris_spec",
    "job_row",
    "model_tensors",
    "start",
    "submit",
    "wait_for",
]


def model_tensors(settings: Settings, job_id: str) -> dict[str, torch.Tensor]:
    """The weights of a succeeded job's model."""
    job = job_row(settings.resolved_database_url, job_id)
    assert job.model_key is not None, f"job {job_id} has no model ({job.status}, {job.error})"
    return load_safetensors(ArtifactStore(settings.resolved_storage_url).get_bytes(job.model_key))


def start(worker: Worker, max_jobs: int = 1) -> threading.Thread:
    """``worker.run(max_jobs)`` in a daemon thread, started."""
    thread = threading.Thread(target=worker.run, kwargs={"max_jobs": max_jobs}, daemon=True)
    thread.start()
    return thread
