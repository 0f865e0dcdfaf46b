"""A job as the client holds it (:class:`Job`, a read-only mapping with its
actions) and the Keras-shaped History that ``Client.fit`` returns."""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from fitq.service.client.resource import Resource

PREDICT_BATCH_ROWS = 5000
"""Rows per predict call (the server caps a call at FITQ_MAX_PREDICT_ROWS)."""
NON_METRICS = ("epoch", "seconds", "samples_per_second")
"""The fields of a History row that are not metric values."""


@dataclass
class History:
    """What ``Client.fit`` returns, shaped as Keras' ``History``."""

    history: dict[str, list[float]]
    epoch: list[int]
    job: Job
    params: dict[str, Any] = field(default_factory=dict)


class Job(Resource):
    """A job resource (read it as a dict: ``job["status"]``) with its actions."""

    @property
    def test_metrics(self) -> dict[str, float] | None:
        return self._data.get("test_metrics")

    def refresh(self) -> Job:
        self._data = self._client.job(self.id)
        return self

    def wait(
        self, progress: bool = False, *, timeout: float | None = None, out: TextIO | None = None
    ) -> Job:
        """Follow the job's event stream until it ends; with ``progress``, print
        each epoch as Keras' ``fit(verbose=2)`` does. Returns the job, refreshed."""
        stream = out or sys.stdout
        deadline = None if timeout is None else time.monotonic() + timeout
        epochs = self._data.get("progress", {}).get("epochs")
        for event in self._client.events(self.id):
            if event.kind == "progress":
                epochs = event.data.get("epochs", epochs)
            if progress and event.kind == "epoch":
                print(keras_line({**event.data, "epochs": epochs}), file=stream, flush=True)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} did not end within {timeout} s")
        return self.refresh()

    @property
    def history(self) -> dict[str, list[float]]:
        """Keras' ``History.history``: each metric's list of per-epoch values."""
        return history_of(self._client.epochs(self.id))

    def download(self, path: str | Path | None = None, *, format: str = "safetensors") -> bytes:
        """The trained model as ``format``: ``"safetensors"`` (fitq's own layout,
        docs/export.md), ``"keras"`` (a Keras 3 ``.keras`` archive) or ``"onnx"``;
        also written to ``path`` when given."""
        data = self._client.download_model(self.id, format=format)
        if path is not None:
            Path(path).write_bytes(data)
        return data

    def to_keras(self) -> Any:
        """The trained model as a Keras model (``keras.saving.load_model`` of the
        ``.keras`` archive): ``predict`` equals :meth:`predict`, normalization included.
        Needs Keras 3 and a backend (``KERAS_BACKEND``) in this environment."""
        try:
            import keras  # only here: the client does not need Keras otherwise
        except ImportError as exc:
            raise ImportError(
                "job.to_keras() needs Keras 3 (pip install keras, with a backend such as "
                f"torch, jax or tensorflow): {exc}"
            ) from exc
        with tempfile.TemporaryDirectory(prefix="fitq-") as folder:
            path = Path(folder) / f"{self.id}.keras"
            self.download(path, format="keras")
            return keras.saving.load_model(path)

    def evaluate(
        self, x: Any = None, y: Any = None, *, dataset: str | Path | None = None
    ) -> dict[str, float]:
        """As Keras' ``model.evaluate(x, y, return_dict=True)``: the loss and the compiled
        metrics of the trained model on ``x, y`` (uploaded for this call, then deleted),
        or on ``dataset`` (a dataset id, a built-in's name, or a file to upload)."""
        if (x is None) == (dataset is None):
            raise ValueError("give either x and y, or dataset=")
        if dataset is not None:
            return self._client.evaluate(self.id, self._client._dataset_id(dataset))
        if y is None:
            raise ValueError("evaluate(x, y) needs y, the targets of x")
        uploaded = str(self._client.upload_dataset(x, y, name=f"evaluate-{self.id}")["id"])
        try:
            return self._client.evaluate(self.id, uploaded)
        finally:
            self._client.delete_dataset(uploaded)

    def predict(self, x: Any) -> np.ndarray:
        """As Keras' ``model.predict``: per row, the class probabilities
        (classification) or the predicted values (regression)."""
        rows = np.asarray(x, dtype=np.float64)
        if rows.ndim == 1:
            rows = rows[None, :]
        outputs = []
        for start in range(0, len(rows), PREDICT_BATCH_ROWS):
            answer = self._client.predict(
                self.id, rows[start : start + PREDICT_BATCH_ROWS].tolist()
            )
            outputs.append(np.asarray(answer.get("probabilities") or answer["predictions"]))
        return np.concatenate(outputs)

    def cancel(self) -> Job:
        self._data = self._client.cancel(self.id)
        return self

    def delete(self) -> None:
        """Delete the job (it must have ended), its History and its files."""
        self._client.delete_job(self.id)


def history_of(epochs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """``GET /v1/jobs/{id}/metrics`` rows → ``{"loss": [...], "accuracy": [...], …}``."""
    history: dict[str, list[float]] = {}
    for row in epochs:
        for key, value in row.items():
            if key not in NON_METRICS and value is not None:
                history.setdefault(key, []).append(value)
    return history


def keras_line(epoch: dict[str, Any]) -> str:
    """``Epoch 3/10 - 0.4s - loss: 0.2100 - accuracy: 0.9400`` (Keras' verbose=2 line)."""
    metrics = " - ".join(
        f"{k}: {v:.4f}"
        for k, v in epoch.items()
        if k not in (*NON_METRICS, "job_id", "at", "attempt", "epochs")
        and isinstance(v, int | float)
    )
    total = f"/{epoch['epochs']}" if epoch.get("epochs") else ""
    return f"Epoch {epoch['epoch']}{total} - {epoch.get('seconds', 0):.1f}s - {metrics}"
