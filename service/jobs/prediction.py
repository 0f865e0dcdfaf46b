"""A succeeded job's trained model: its file (``GET /v1/jobs/{id}/model``) and
its predictions (``POST /v1/jobs/{id}/predict``), from a small per-process
cache of loaded models. torch is imported only when a prediction is asked."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from fitq.service import spec as specs
from fitq.service.db.models import SUCCEEDED, Job
from fitq.service.errors import Conflict, InvalidInput, PayloadTooLarge
from fitq.service.store import ArtifactStore

PREDICTOR_CACHE_SIZE = 8
"""Loaded models kept in memory for predict (per API process)."""
ACTIVATION_COPIES = 3
"""Rows of the widest layer's width a forward pass holds at once, at most: a layer's
input and output, and the copy an activation that cannot work in place makes."""
FLOAT32_MAX = float(np.finfo(np.float32).max)
"""The largest predict input the model's float32 holds."""


def _require_succeeded(job: Job) -> str:
    if job.status != SUCCEEDED or not job.model_key:
        raise Conflict(f"job {job.id} has no trained model: it is {job.status}")
    return job.model_key


def model_bytes(store: ArtifactStore, job: Job) -> bytes:
    """The safetensors file of a succeeded job (409 before it succeeded)."""
    key = _require_succeeded(job)
    try:
        return store.get_bytes(key)
    except FileNotFoundError:
        raise Conflict(f"job {job.id}'s model file is missing from the store") from None


class _PredictorCache:
    """A small LRU of loaded models by (job id, model key); thread-safe."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str], load: Any) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = load()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


_predictors = _PredictorCache(PREDICTOR_CACHE_SIZE)


def predict(
    store: ArtifactStore, job: Job, inputs: list[list[float]], *, max_rows: int, max_bytes: int
) -> dict[str, Any]:
    """Apply a succeeded job's model to ``inputs``: class indices and
    probabilities for classification, values for regression. At most
    ``max_bytes`` (``FITQ_PREDICT_MAX_BYTES``) of activations at a time."""
    key = _require_succeeded(job)
    spec = specs.up_to_date(job.spec)  # trained before an upgrade: today's contract
    n_features = int(spec["model"]["input_dim"])
    x = _input_matrix(inputs, n_features, max_rows)

    def load() -> Any:
        from fitq.worker.engine import load_predictor  # torch only when a prediction is asked

        return load_predictor(spec["model"], model_bytes(store, job), device="cpu")

    predictor = _predictors.get((job.id, key), load)
    out = outputs(predictor, x, max_bytes)
    overflowed = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if overflowed.size:
        i = int(overflowed[0])
        raise InvalidInput(
            f"inputs[{i}] is too large for this model: its outputs overflow float32",
            loc=["body", "inputs", i],
        )
    return _interpret(out, spec["compile"]["loss"])


def rows_per_chunk(model: Any, max_bytes: int) -> int:
    """Rows one forward pass of ``model`` (the engine's ``Model``) may take so that
    its activations stay within ``max_bytes``: what a row costs is set by the widest
    layer (a 200,000-unit layer holds 800 KB per row and copy), not by the rows."""
    widest = max(model.input_dim, *(layer.out_dim for layer in model.layers))
    per_row = ACTIVATION_COPIES * widest * model.dtype.itemsize
    return max(1, max_bytes // per_row)


def outputs(predictor: Any, x: np.ndarray, max_bytes: int) -> np.ndarray:
    """The model's outputs for the rows of ``x`` [n, out] (float64), computed
    ``rows_per_chunk`` rows at a time; 413 when the outputs alone would pass
    ``max_bytes``. (Before: 8,192 rows at a time whatever the width, ~6.5 GB for
    a 200,000-unit layer.)"""
    n_outputs = predictor.model.output_dim
    if x.shape[0] * n_outputs * 8 > max_bytes:
        raise PayloadTooLarge(
            f"{x.shape[0]} rows of {n_outputs} outputs each are over the limit of "
            f"{max_bytes} bytes (FITQ_PREDICT_MAX_BYTES); send fewer rows per call"
        )
    rows = rows_per_chunk(predictor.model, max_bytes)
    out = np.empty((x.shape[0], n_outputs), dtype=np.float64)
    for lo in range(0, x.shape[0], rows):
        chunk = np.asarray(predictor.predict(x[lo : lo + rows]), dtype=np.float64)
        out[lo : lo + rows] = chunk.reshape(chunk.shape[0], -1)
    return out


def _input_matrix(inputs: list[list[float]], n_features: int, max_rows: int) -> np.ndarray:
    if len(inputs) > max_rows:
        raise PayloadTooLarge(
            f"inputs has {len(inputs)} rows, over the limit of {max_rows} per call "
            "(FITQ_MAX_PREDICT_ROWS)"
        )
    if not inputs:
        raise InvalidInput("inputs is empty: give at least one row", loc=["body", "inputs"])
    for i, row in enumerate(inputs):
        if len(row) != n_features:
            raise InvalidInput(
                f"inputs[{i}] has {len(row)} values; the model takes {n_features} features",
                loc=["body", "inputs", i],
            )
        for j, value in enumerate(row):
            if not math.isfinite(value):
                raise InvalidInput(
                    f"inputs[{i}][{j}] is {value}; every input must be a finite number",
                    loc=["body", "inputs", i, j],
                )
            if abs(value) > FLOAT32_MAX:
                raise InvalidInput(
                    f"inputs[{i}][{j}] is {value}; past ±{FLOAT32_MAX:.4g}, the float32 the "
                    "model computes in cannot hold it",
                    loc=["body", "inputs", i, j],
                )
    return np.asarray(inputs, dtype=np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _interpret(out: np.ndarray, loss: dict[str, Any]) -> dict[str, Any]:
    """Model outputs → the predict response, by the loss the model was trained with.

    - categorical losses: probabilities (softmax of logits when ``from_logits``),
      predictions = argmax;
    - binary cross-entropy, one unit: p = P(class 1) (sigmoid of the logit when
      ``from_logits``), predictions = ``p >= 0.5``, probabilities ``[1 - p, p]``;
      several units (multi-label): a 0/1 list and a probability per unit;
    - anything else is regression: values (a number per row for one output).
    """
    name = loss.get("name", "")
    logits = bool(loss.get("from_logits", False))
    if name in ("sparse_categorical_crossentropy", "categorical_crossentropy"):
        probs = _softmax(out) if logits else out
        return {
            "predictions": probs.argmax(axis=1).tolist(),
            "probabilities": probs.tolist(),
        }
    if name == "binary_crossentropy":
        p = _sigmoid(out) if logits else out
        if p.shape[1] == 1:
            p1 = p[:, 0]
            return {
                "predictions": (p1 >= 0.5).astype(int).tolist(),
                "probabilities": np.stack([1.0 - p1, p1], axis=1).tolist(),
            }
        return {"predictions": (p >= 0.5).astype(int).tolist(), "probabilities": p.tolist()}
    values = out[:, 0] if out.shape[1] == 1 else out
    return {"predictions": values.tolist(), "probabilities": None}
