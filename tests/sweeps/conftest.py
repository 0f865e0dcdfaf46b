"""What the sweep tests share: a sweep body, the rows a sweep writes counted,
and a trial's epoch written as its worker writes it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from fitq.service import queue
from fitq.service.db.engine import session_factory, transaction
from fitq.service.db.models import Job, JobEvent, Sweep, SweepTrial
from fitq.service.sweeps import progress
from tests.support.specs import spec_factory


def sweep_body(**overrides: Any) -> dict[str, Any]:
    """A 2 × 2 grid (learning rate × width) on iris, ranked by ``loss``."""
    body: dict[str, Any] = {
        "name": "lr-and-width",
        "spec": spec_factory(compile={"optimizer": {"name": "adam"}}),
        "method": "grid",
        "parameters": {
            "compile.optimizer.learning_rate": {"values": [0.001, 0.01]},
            "model.layers.0.units": {"values": [4, 8]},
        },
        "metric": {"name": "loss", "goal": "minimize"},
    }
    body.update(overrides)
    return body


@dataclass(frozen=True)
class Counts:
    sweeps: int
    trials: int
    jobs: int
    events: int


@pytest.fixture
def counts(database_url: str) -> Callable[[], Counts]:
    """``counts()``: the rows of every table a sweep writes to."""

    def _counts() -> Counts:
        with session_factory(database_url)() as session:

            def count(model: Any) -> int:
                return int(session.scalar(select(func.count()).select_from(model)) or 0)

            return Counts(count(Sweep), count(SweepTrial), count(Job), count(JobEvent))

    return _counts


def claim(url: str) -> tuple[str, int]:
    """Claim the next queued job as a worker would: its id and attempt."""
    with transaction(url) as session:
        claimed = queue.claim(session, "test-worker", 60)
        assert claimed is not None
        return claimed.job_id, claimed.attempt


def epoch(url: str, job_id: str, attempt: int, number: int, **metrics: float) -> bool:
    """Epoch ``number`` of a running trial, written as ``Reporter.epoch`` writes
    it (History row and trial progress in one transaction); whether it stops."""
    with transaction(url) as session:
        queue.record_epoch(
            session,
            job_id,
            attempt,
            epoch=number,
            metrics=metrics,
            seconds=0.1,
            samples_per_second=1000.0,
            checkpoint_key=None,
        )
        return progress.after_epoch(session, job_id, number, metrics)


def finish(url: str, job_id: str, attempt: int) -> None:
    with transaction(url) as session:
        queue.finish(session, job_id, attempt, model_key=f"models/{job_id}", test_metrics=None)


def fail(url: str, job_id: str, attempt: int) -> None:
    with transaction(url) as session:
        queue.fail(session, job_id, attempt, "diverged")
