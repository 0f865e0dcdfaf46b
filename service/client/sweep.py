"""A sweep as the client holds it (:class:`Sweep`, a read-only mapping of the
sweep resource with its actions): follow it, rank its trials, get the best job."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from fitq.service.client.resource import TERMINAL, Resource

if TYPE_CHECKING:
    from fitq.service.client.job import Job

MAXIMIZED = frozenset(
    {
        "accuracy",
        "binary_accuracy",
        "categorical_accuracy",
        "sparse_categorical_accuracy",
        "top_k_categorical_accuracy",
        "sparse_top_k_categorical_accuracy",
        "auc",
        "precision",
        "recall",
        "r2_score",
    }
)
"""Metrics whose goal is ``maximize`` when none is given (as Keras Tuner infers it)."""


def goal_of(metric: str) -> str:
    """``maximize`` for an accuracy-like metric (``val_`` or not), else ``minimize``."""
    base = metric[4:] if metric.startswith("val_") else metric
    return "maximize" if base in MAXIMIZED else "minimize"


class Sweep(Resource):
    """A sweep resource (read it as a dict: ``sweep["status"]``) with its actions."""

    def refresh(self) -> Sweep:
        self._data = self._client.read_sweep(self.id)
        return self

    def wait(
        self,
        progress: bool = False,
        *,
        timeout: float | None = None,
        poll_seconds: float = 1.0,
        out: TextIO | None = None,
    ) -> Sweep:
        """Poll until every trial has ended; with ``progress``, print a line
        whenever the counts or the best trial change. Returns the sweep, refreshed."""
        stream = out or sys.stdout
        deadline = None if timeout is None else time.monotonic() + timeout
        shown = None
        while True:
            self.refresh()
            line = summary_line(self._data)
            if progress and line != shown:
                print(line, file=stream, flush=True)
                shown = line
            if self.status in TERMINAL:
                return self
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweep {self.id} still {self.status} after {timeout} s")
            time.sleep(poll_seconds)

    def trials(self) -> list[dict[str, Any]]:
        """Every trial, best first (trials without a value last)."""
        return self._client.sweep_trials(self.id)

    @property
    def best(self) -> Job | None:
        """The best succeeded trial as a :class:`~fitq.service.client.job.Job`
        (predict, download), or None while no trial has succeeded."""
        best = self.refresh()._data.get("best")
        return None if best is None else self._client.get_job(best["job_id"])

    def table(self) -> list[dict[str, Any]]:
        """The ranking as rows for display: rank, each parameter's value, the
        metric's value, status, epochs, pruned, job id."""
        metric = self._data["metric"]["name"]
        rows = []
        for rank, trial in enumerate(self.trials(), start=1):
            rows.append(
                {
                    "rank": rank if trial["value"] is not None else None,
                    **trial["params"],
                    metric: trial["value"],
                    "status": trial["status"],
                    "epochs": trial["epochs"],
                    "pruned": trial["pruned"],
                    "job_id": trial["job_id"],
                }
            )
        return rows

    def cancel(self) -> Sweep:
        """Cancel every trial not yet ended."""
        self._data = self._client.cancel_sweep(self.id)
        return self


def summary_line(sweep: Mapping[str, Any]) -> str:
    """``sweep 3f2a… running: 5/12 ended (2 running) · best val_loss 0.1234 (lr=0.01)``."""
    counts = sweep["trials"]
    ended = counts["succeeded"] + counts["failed"] + counts["cancelled"]
    line = f"sweep {sweep['id']} {sweep['status']}: {ended}/{counts['total']} ended"
    if counts["running"]:
        line += f" ({counts['running']} running)"
    best = sweep.get("best")
    if best is not None:
        params = ", ".join(f"{k}={v}" for k, v in best["params"].items())
        line += f" · best {sweep['metric']['name']} {best['value']:.4f} ({params})"
    return line
