"""The stack the fuzzer talks to: `fitq api` under uvicorn on a fresh
PostgreSQL database, a key, uploaded datasets and a trained job, so that a
fuzzed request can reach past "404 no such id" into the real logic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg

from fitq.service.client import Client
from tests.databases import fresh_postgres_database, postgres_unreachable
from tests.e2e.processes import (
    fitq_env,
    fitq_process,
    free_port,
    run_fitq,
    wait_for_line,
    wait_healthy,
)

TRAIN_TIMEOUT_SECONDS = 180
FEATURES = 4
CLASSES = 3
ROWS = 60


@dataclass(frozen=True)
class LiveApi:
    """A running API and the ids a valid request can name."""

    url: str
    key: str
    dataset_id: str
    """An upload of ``FEATURES`` features and ``CLASSES`` classes."""
    spare_dataset_id: str
    """An upload nothing uses: what a valid ``DELETE`` may take away."""
    job_id: str
    """A succeeded job on ``dataset_id``: its model and predictions exist."""
    log: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def csv_bytes(seed: int = 0) -> bytes:
    """A small classification table: ``FEATURES`` numeric columns, then ``label``."""
    rng = np.random.default_rng(seed)
    y = np.arange(ROWS) % CLASSES
    x = rng.normal(size=(ROWS, FEATURES)).round(4) + y[:, None]
    lines = [",".join([*(f"f{j}" for j in range(FEATURES)), "label"])]
    lines += [",".join([*(str(v) for v in row), str(c)]) for row, c in zip(x, y, strict=True)]
    return ("\n".join(lines) + "\n").encode()


def spec(dataset_id: str) -> dict[str, object]:
    return {
        "model": {
            "input_dim": FEATURES,
            "layers": [
                {"type": "dense", "units": 8, "activation": "relu"},
                {"type": "dense", "units": CLASSES, "activation": "softmax"},
            ],
        },
        "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy"},
        "fit": {"epochs": 1, "batch_size": 16},
        "dataset_id": dataset_id,
    }


@contextmanager
def live_api(tmp: Path) -> Iterator[LiveApi]:
    """Migrate with `fitq db upgrade`, create a key with `fitq keys create`,
    serve with `fitq api`, upload two datasets and train one job with a
    `fitq worker` that is stopped again before the fuzzing starts."""
    with ExitStack() as stack:
        try:
            database_url = stack.enter_context(fresh_postgres_database(prefix="fitq_fuzz"))
        except psycopg.OperationalError as exc:
            postgres_unreachable(exc)
        env = fitq_env(tmp / "home", FITQ_DATABASE_URL=database_url)
        migrated = run_fitq(["db", "upgrade"], env)
        assert migrated.returncode == 0, migrated.stderr
        created = run_fitq(["keys", "create", "fuzz"], env)
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = tmp / "api.log"
        with fitq_process(["api", "--port", str(port)], env, log) as api:
            wait_healthy(url, api, log)
            with Client(url, key) as client:
                data, spare = tmp / "data.csv", tmp / "spare.csv"
                data.write_bytes(csv_bytes(0))
                spare.write_bytes(csv_bytes(1))
                dataset = client.upload_dataset(data, name="fuzz-data")
                spare_dataset = client.upload_dataset(spare, name="fuzz-spare")
                job = client.submit(spec(dataset["id"]))
                worker_log = tmp / "worker.log"
                with fitq_process(["worker"], env, worker_log):
                    wait_for_line(worker_log, "worker started")
                    final = client.wait(job["id"], timeout=TRAIN_TIMEOUT_SECONDS, poll_seconds=0.2)
                assert final["status"] == "succeeded", final
                # The first prediction loads the engine (torch) into the API process.
                client.predict(job["id"], [[0.0] * FEATURES])
            yield LiveApi(url, key, dataset["id"], spare_dataset["id"], job["id"], log)
