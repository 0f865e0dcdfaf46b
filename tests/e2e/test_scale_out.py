"""`fitq api` and two `fitq worker` processes sharing PostgreSQL: eight jobs,
all succeed, every epoch recorded exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from fitq.service.client import Client
from fitq.service.db.engine import session_factory
from fitq.service.db.models import ExecutionLog, JobEpoch
from tests.e2e.processes import (
    fitq_env,
    fitq_process,
    free_port,
    run_fitq,
    wait_for_line,
    wait_healthy,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

JOBS = 8
EPOCHS = 4


def spec(seed: int) -> dict[str, object]:
    return {
        "model": {
            "input_dim": 4,
            "layers": [
                {"type": "dense", "units": 32, "activation": "relu"},
                {"type": "dense", "units": 3, "activation": "softmax"},
            ],
        },
        "compile": {
            "optimizer": "adam",
            "loss": "sparse_categorical_crossentropy",
            "metrics": ["accuracy"],
        },
        "fit": {"epochs": EPOCHS, "batch_size": 8},
        "seed": seed,
        "dataset_id": "iris",
    }


def test_two_workers_share_one_postgres_queue(tmp_path: Path, postgres_url: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = fitq_env(tmp_path / "home", FITQ_DATABASE_URL=postgres_url)
    assert run_fitq(["db", "upgrade"], env).returncode == 0
    created = run_fitq(["keys", "create", "scale-out"], env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("fitq_") and "\n" not in key

    logs = [tmp_path / name for name in ("api.log", "worker1.log", "worker2.log")]
    with (
        fitq_process(["api", "--port", str(port)], env, logs[0]) as api,
        fitq_process(["worker"], env, logs[1]),
        fitq_process(["worker"], env, logs[2]),
    ):
        wait_healthy(url, api, logs[0])
        for log in logs[1:]:
            wait_for_line(log, "worker started")
        with Client(url, key) as client:
            ids = [client.submit(spec(seed))["id"] for seed in range(JOBS)]
            finals = [client.wait(job_id, timeout=300) for job_id in ids]
    assert [job["status"] for job in finals] == ["succeeded"] * JOBS
    assert len({job["worker_id"] for job in finals}) == 2, "both workers should have trained"

    with session_factory(postgres_url)() as session:
        epochs = session.execute(
            select(JobEpoch.job_id, JobEpoch.epoch).where(JobEpoch.job_id.in_(ids))
        ).all()
        runs = session.execute(
            select(ExecutionLog.job_id, ExecutionLog.epoch).where(ExecutionLog.job_id.in_(ids))
        ).all()
    assert sorted(epochs) == sorted((j, e) for j in ids for e in range(1, EPOCHS + 1))
    assert max(Counter(runs).values()) == 1, "an epoch ran twice"
