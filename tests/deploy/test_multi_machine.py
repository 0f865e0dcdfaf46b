"""Workers on "different machines": `fitq api` and two `fitq worker` processes,
each with its own empty home folder, sharing only the PostgreSQL URL and the
S3 URL. An uploaded dataset (so the workers must read it from the bucket)
trains on both workers; every model downloads from the API and is the one in
the bucket; no worker leaves a file at home (checkpoints on S3, and a resume
from them by another worker: test_s3_pipeline). All three log JSON lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors

from fitq.service import auth
from fitq.service.client import Client
from fitq.service.db.engine import transaction
from tests.deploy.conftest import S3
from tests.support.processes import (
    fitq_env,
    fitq_process,
    free_port,
    wait_for_line,
    wait_healthy,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

JOBS = 4
EPOCHS = 3
ROWS = 400


def dataset_csv(path: Path) -> Path:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, ROWS)
    x = rng.normal(size=(ROWS, 6)) + y[:, None]
    lines = ["f0,f1,f2,f3,f4,f5,cls"]
    lines += [",".join(f"{v:.4f}" for v in row) + f",{c}" for row, c in zip(x, y, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def spec(seed: int, dataset_id: str) -> dict[str, Any]:
    return {
        "model": {
            "input_dim": 6,
            "layers": [
                {"type": "dense", "units": 32, "activation": "relu"},
                {"type": "dense", "units": 3, "activation": "softmax"},
            ],
        },
        "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy"},
        "fit": {"epochs": EPOCHS, "batch_size": 8},
        "seed": seed,
        "dataset_id": dataset_id,
    }


def json_lines(log: Path) -> list[dict[str, Any]]:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{log.name}: not a JSON line: {line!r}") from None
    return parsed


def test_workers_share_only_the_database_and_the_bucket(
    tmp_path: Path, postgres_url: str, s3: S3
) -> None:
    shared = {"FITQ_DATABASE_URL": postgres_url, "FITQ_LOG_FORMAT": "json", **s3.env()}
    homes = {name: tmp_path / name for name in ("api", "machine-1", "machine-2")}
    for home in homes.values():
        home.mkdir()
    envs = {name: fitq_env(home, **shared) for name, home in homes.items()}
    envs["machine-2"]["FITQ_DEVICE"] = "cpu"  # pinned, as `cuda:1` would be on a GPU box

    with transaction(postgres_url) as session:  # the schema is at head already
        key = auth.create_key(session, "multi-machine")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    logs = {name: tmp_path / f"{name}.log" for name in homes}
    with (
        fitq_process(["api", "--port", str(port)], envs["api"], logs["api"]) as api,
        fitq_process(["worker"], envs["machine-1"], logs["machine-1"]),
        fitq_process(["worker"], envs["machine-2"], logs["machine-2"]),
    ):
        wait_healthy(url, api, logs["api"])
        for name in ("machine-1", "machine-2"):
            wait_for_line(logs[name], "worker started")
        with Client(url, key) as client:
            dataset = client.upload_dataset(dataset_csv(tmp_path / "data.csv"), name="data")
            ids = [client.submit(spec(seed, dataset["id"]))["id"] for seed in range(JOBS)]
            finals = [client.wait(job_id, timeout=240, poll_seconds=0.2) for job_id in ids]
            models = [client.download_model(job_id) for job_id in ids]

    assert [job["status"] for job in finals] == ["succeeded"] * JOBS, [
        job.get("error") for job in finals
    ]
    workers = {job["worker_id"] for job in finals}
    assert len(workers) == 2, f"both workers should have trained: {workers}"
    assert {job["device"] for job in finals} == {"cpu"}
    bucket = s3.store()
    for job_id, model in zip(ids, models, strict=True):
        assert load_safetensors(model)["layers.0.kernel"].shape == (6, 32)
        stored = bucket.fs.find(f"{bucket.root}/jobs/{job_id}")
        assert model in [bucket.fs.cat_file(p) for p in stored if "/model" in p], stored

    for name in ("machine-1", "machine-2"):
        left = [p for p in homes[name].rglob("*")]
        assert left == [], f"{name} kept files at home: {left}"

    api_lines = json_lines(logs["api"])
    assert any(
        r.get("logger") == "uvicorn.access" and r.get("path", "").startswith("/v1/jobs/")
        for r in api_lines
    ), "uvicorn's access log in JSON"
    started = [
        r
        for name in ("machine-1", "machine-2")
        for r in json_lines(logs[name])
        if r.get("action") == "start"
    ]
    assert {r["job_id"] for r in started} == set(ids)
    assert all({"attempt", "worker_id"} <= set(r) for r in started)
    assert {r["worker_id"] for r in started} == workers
