"""The whole artifact path on ``s3://``, in process: the API ingests an upload
into the bucket; a worker (its store built from settings, as ``fitq worker``
does) reads the dataset from it, trains, and on shutdown leaves its checkpoint
there; a second worker resumes from that checkpoint and writes the model; the
API serves the model back and predicts with it."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors

from fitq.service.settings import Settings
from fitq.worker.runner import Worker
from tests.deploy.conftest import S3
from tests.worker.helpers import WAIT_SECONDS, epochs_of, job_row, start, wait_for

pytestmark = pytest.mark.anyio

EPOCHS = 30


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """SQLite only: the store is what varies here (PostgreSQL runs in the multi-machine test)."""
    return sqlite_url


@pytest.fixture
def settings(tmp_path: Path, database_url: str, s3: S3) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=database_url,
        storage_url=s3.url,
        s3_endpoint_url=s3.endpoint_url,
        api_key=None,
        checkpoint_seconds=3600,
    )


def blobs_csv(n: int = 120) -> bytes:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 4)) + y[:, None] * 2.0
    lines = ["a,b,c,d,label"] + [
        ",".join(f"{v:.5f}" for v in row) + f",{c}" for row, c in zip(x, y, strict=True)
    ]
    return ("\n".join(lines) + "\n").encode()


async def test_upload_train_checkpoint_download_on_s3(
    client: httpx.AsyncClient, auth_headers: dict[str, str], settings: Settings, s3: S3
) -> None:
    uploaded = await client.post(
        "/v1/datasets",
        headers=auth_headers,
        files={"file": ("blobs.csv", blobs_csv(), "text/csv")},
        data={"name": "blobs"},
    )
    assert uploaded.status_code == 201, uploaded.text
    dataset = uploaded.json()
    bucket = s3.store()
    prefix = f"datasets/{dataset['sha256']}"
    assert bucket.exists(f"{prefix}/x.npy") and bucket.exists(f"{prefix}/meta.json")
    assert not (settings.home_path / "store").exists(), "nothing may land in the local store"

    spec = {
        "model": {
            "input_dim": 4,
            "layers": [
                {"type": "dense", "units": 8, "activation": "relu"},
                {"type": "dense", "units": 3, "activation": "softmax"},
            ],
        },
        "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy"},
        "fit": {"epochs": EPOCHS, "batch_size": 8},
        "seed": 0,
        "dataset_id": dataset["id"],
        "test_dataset_id": dataset["id"],
    }
    submitted = await client.post("/v1/jobs", headers=auth_headers, json=spec)
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    url = settings.resolved_database_url

    first = Worker(settings, worker_id="machine-1")
    thread = start(first)
    wait_for(lambda: job_row(url, job_id).epoch >= 1, "an epoch on the first worker")
    first.stop.set()  # SIGTERM: checkpoint to the bucket, hand the job back
    thread.join(WAIT_SECONDS)
    handed_back = job_row(url, job_id)
    assert handed_back.status == "queued" and handed_back.checkpoint_key
    assert bucket.exists(handed_back.checkpoint_key), "the checkpoint is in the bucket"

    assert Worker(settings, worker_id="machine-2").run(max_jobs=1) == 1
    job = (await client.get(f"/v1/jobs/{job_id}", headers=auth_headers)).json()
    assert job["status"] == "succeeded", job.get("error")
    assert (job["worker_id"], job["device"], job["attempt"]) == ("machine-2", "cpu", 2)
    assert epochs_of(url, job_id) == list(range(1, EPOCHS + 1))

    model = await client.get(f"/v1/jobs/{job_id}/model", headers=auth_headers)
    assert model.status_code == 200
    stored = bucket.fs.find(f"{bucket.root}/jobs/{job_id}")
    assert model.content in [bucket.fs.cat_file(p) for p in stored if "/model" in p], stored
    tensors = load_safetensors(model.content)
    assert tensors["layers.0.kernel"].shape == (4, 8)

    predicted = await client.post(
        f"/v1/jobs/{job_id}/predict", headers=auth_headers, json={"inputs": [[0, 0, 0, 0]]}
    )
    assert predicted.status_code == 200, predicted.text
