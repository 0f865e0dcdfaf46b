"""The stack the fuzzer talks to: `fitq api` under uvicorn on a fresh
PostgreSQL database (tests/support's live stack), a key, uploaded datasets
and a trained job, so that a fuzzed request can reach past "404 no such id"
into the real logic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg

from fitq.service.client import Client
from tests.databases import fresh_postgres_database, postgres_unreachable
from tests.support.processes import STOP_TIMEOUT_SECONDS
from tests.support.specs import spec_factory
from tests.support.stack import live_stack

TRAIN_TIMEOUT_SECONDS = 180
MAX_PREDICT_ROWS = 64
"""The server's FITQ_MAX_PREDICT_ROWS, which the document states as predict's
``maxItems``: the fuzzer's boundary cases send that many rows, and one more."""
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
    spare_job_id: str
    """A cancelled job: what a valid ``DELETE`` of a job may take away."""
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


@contextmanager
def live_api(tmp: Path) -> Iterator[LiveApi]:
    """``fitq api`` and one worker on a fresh database: two datasets uploaded
    and one job trained, then the worker stopped before the fuzzing starts."""
    with ExitStack() as stack:
        try:
            database_url = stack.enter_context(fresh_postgres_database(prefix="fitq_fuzz"))
        except psycopg.OperationalError as exc:
            postgres_unreachable(exc)
        live = stack.enter_context(
            live_stack(tmp, database_url=database_url, FITQ_MAX_PREDICT_ROWS=str(MAX_PREDICT_ROWS))
        )
        with Client(live.url, live.key) as client:
            data, spare = tmp / "data.csv", tmp / "spare.csv"
            data.write_bytes(csv_bytes(0))
            spare.write_bytes(csv_bytes(1))
            dataset = client.upload_dataset(data, name="fuzz-data")
            spare_dataset = client.upload_dataset(spare, name="fuzz-spare")
            spec = spec_factory(
                input_dim=FEATURES, classes=CLASSES, fit={"epochs": 1}, dataset_id=dataset["id"]
            )
            job = client.submit(spec)
            final = client.wait(job["id"], timeout=TRAIN_TIMEOUT_SECONDS, poll_seconds=0.2)
            assert final["status"] == "succeeded", final
            live.workers.close(grace_seconds=STOP_TIMEOUT_SECONDS)
            spare_job = client.submit(spec)
            client.cancel(spare_job["id"])
            # The first prediction loads the engine (torch) into the API process.
            client.predict(job["id"], [[0.0] * FEATURES])
        api = live.apis[0]
        yield LiveApi(
            live.url,
            live.key,
            dataset["id"],
            spare_dataset["id"],
            job["id"],
            spare_job["id"],
            api.log,
        )
