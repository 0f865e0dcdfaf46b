"""Keras' metrics, by their History names: over several batches of uneven size, the
engine's per-step cells summed and turned into the epoch's value equal Keras' own
metric objects updated batch by batch (Keras 3, torch backend, float32) — a mean of
per-row values for the accuracies, the accumulated counts for precision, recall, auc
and root_mean_squared_error."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from fitq.service.spec.metrics import MetricName
from fitq.worker.engine import Trainer, activations, metrics
from fitq.worker.engine.metrics import Metric
from tests.engine.helpers import blobs, dense, spec
from tests.support.keras_reference import keras_on_torch

ROWS, BATCH = 70, 16  # five batches, the last of 6 rows


@pytest.fixture(scope="module")
def keras(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """Keras 3 on the torch backend (float32, as the engine's sums)."""
    with keras_on_torch(tmp_path_factory) as module:
        yield module


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _probabilities(k: int, seed: int) -> np.ndarray:
    z = _rng(seed).normal(size=(ROWS, k)) * 2.0
    return (np.exp(z) / np.exp(z).sum(1, keepdims=True)).astype(np.float32)


def _sigmoids(k: int, seed: int) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-2.0 * _rng(seed).normal(size=(ROWS, k))))).astype(np.float32)


def _labels(k: int, seed: int) -> np.ndarray:
    return _rng(seed).integers(0, k, size=(ROWS, 1)).astype(np.int64)


def _onehot(k: int, seed: int) -> np.ndarray:
    return np.eye(k, dtype=np.float32)[_labels(k, seed)[:, 0]]


def _binary(k: int, seed: int) -> np.ndarray:
    return _rng(seed).integers(0, 2, size=(ROWS, k)).astype(np.float32)


# name → (the engine's metric, Keras' metric class, outputs, targets)
CASES: dict[str, tuple[str, str, np.ndarray, np.ndarray]] = {
    "binary_accuracy": ("binary_accuracy", "BinaryAccuracy", _sigmoids(1, 1), _binary(1, 2)),
    "binary_accuracy_multilabel": (
        "binary_accuracy", "BinaryAccuracy", _sigmoids(3, 3), _binary(3, 4),
    ),
    "categorical_accuracy": (
        "categorical_accuracy", "CategoricalAccuracy", _probabilities(4, 5), _onehot(4, 6),
    ),
    "sparse_categorical_accuracy": (
        "sparse_categorical_accuracy", "SparseCategoricalAccuracy", _probabilities(4, 7),
        _labels(4, 8),
    ),
    "top_k": (
        "top_k_categorical_accuracy", "TopKCategoricalAccuracy", _probabilities(8, 9),
        _onehot(8, 10),
    ),
    "sparse_top_k": (
        "sparse_top_k_categorical_accuracy", "SparseTopKCategoricalAccuracy",
        _probabilities(8, 11), _labels(8, 12),
    ),
    "precision": ("precision", "Precision", _sigmoids(1, 13), _binary(1, 14)),
    "precision_multilabel": ("precision", "Precision", _sigmoids(3, 15), _binary(3, 16)),
    "precision_categorical": ("precision", "Precision", _probabilities(4, 17), _onehot(4, 18)),
    "recall": ("recall", "Recall", _sigmoids(1, 19), _binary(1, 20)),
    "recall_multilabel": ("recall", "Recall", _sigmoids(3, 21), _binary(3, 22)),
    "auc": ("auc", "AUC", _sigmoids(1, 23), _binary(1, 24)),
    "auc_multilabel": ("auc", "AUC", _sigmoids(3, 25), _binary(3, 26)),
    "auc_categorical": ("auc", "AUC", _probabilities(4, 27), _onehot(4, 28)),
    "rmse": (
        "root_mean_squared_error", "RootMeanSquaredError",
        _rng(29).normal(size=(ROWS, 2)).astype(np.float32),
        _rng(30).normal(size=(ROWS, 2)).astype(np.float32),
    ),
    "mae": (
        "mae", "MeanAbsoluteError", _rng(31).normal(size=(ROWS, 2)).astype(np.float32),
        _rng(32).normal(size=(ROWS, 2)).astype(np.float32),
    ),
    "mse": (
        "mse", "MeanSquaredError", _rng(33).normal(size=(ROWS, 2)).astype(np.float32),
        _rng(34).normal(size=(ROWS, 2)).astype(np.float32),
    ),
}  # fmt: skip


def _epoch(
    metric: Metric,
    out: np.ndarray,
    y: np.ndarray,
    activation: activations.Activation | None = None,
) -> float:
    """The metric over ROWS rows in batches of BATCH, as the trainer computes it."""
    rows = []
    for lo in range(0, ROWS, BATCH):
        row = torch.zeros(metrics.width([metric]))
        cells = metrics.cells(row, [metric])
        outb, yb = torch.from_numpy(out[lo : lo + BATCH]), torch.from_numpy(y[lo : lo + BATCH])
        metric.total(outb, yb, cells[1], False, activation)
        rows.append(row)
    sums = torch.stack(rows).to(torch.float64).sum(0).tolist()
    return metrics.results([metric], sums, ROWS)[metric.name]


def _keras_epoch(keras: ModuleType, cls: str, out: np.ndarray, y: np.ndarray) -> float:
    m = getattr(keras.metrics, cls)()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy 2's __array__ copy=
        for lo in range(0, ROWS, BATCH):
            m.update_state(y[lo : lo + BATCH], out[lo : lo + BATCH])
        return float(m.result())


class TestAgainstKeras:
    @pytest.mark.parametrize("case", list(CASES))
    def test_epoch_value_equals_keras(self, case: str, keras: ModuleType) -> None:
        name, cls, out, y = CASES[case]
        ours = _epoch(metrics.get(name), out, y)
        assert ours == pytest.approx(_keras_epoch(keras, cls, out, y), rel=1e-6, abs=1e-7)

    def test_every_metric_the_spec_accepts_is_covered(self) -> None:
        covered = {name for name, *_ in CASES.values()} | {"accuracy"}  # accuracy: test_fit.py
        assert covered == set(MetricName.__args__)  # type: ignore[attr-defined]

    @pytest.mark.parametrize("name", ["precision", "recall", "auc", "binary_accuracy"])
    def test_a_fused_sigmoid_is_applied_first(self, name: str) -> None:
        """With the final sigmoid fused into the loss, the metric sees probabilities."""
        z = _rng(40).normal(size=(ROWS, 1)).astype(np.float32) * 3
        p = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
        y = _binary(1, 41)
        fused = _epoch(metrics.get(name), z, y, activations.Sigmoid())
        assert fused == pytest.approx(_epoch(metrics.get(name), p, y), abs=1e-6)

    def test_top_k_with_fewer_classes_than_k_counts_every_row(self) -> None:
        assert _epoch(metrics.get("top_k_categorical_accuracy"), _probabilities(3, 42),
                      _onehot(3, 43)) == 1.0  # fmt: skip

    def test_precision_without_a_predicted_positive_is_0(self) -> None:
        out, y = np.zeros((ROWS, 1), np.float32), _binary(1, 44)
        assert _epoch(metrics.get("precision"), out, y) == 0.0


class TestInTraining:
    METRICS = [
        "precision", "recall", "auc", "binary_accuracy", "categorical_accuracy",
        "top_k_categorical_accuracy", "root_mean_squared_error", "mae",
    ]  # fmt: skip

    def _trained(self, **fit: Any) -> tuple[Trainer, np.ndarray, np.ndarray]:
        x, y = blobs(n=90, classes=3)
        s = spec(
            [dense(8, "relu"), dense(3, "softmax")],
            loss="categorical_crossentropy",
            metrics=self.METRICS,
            epochs=2,
            validation_split=0.2,
            **fit,
        )
        trainer = Trainer(**s, device="cpu")
        trainer.fit(x, y)
        return trainer, x, y

    def test_history_has_keras_names(self) -> None:
        trainer, _, _ = self._trained()
        for name in self.METRICS:
            assert len(trainer.history[name]) == 2 and len(trainer.history[f"val_{name}"]) == 2

    def test_validation_values_are_evaluate(self, keras: ModuleType) -> None:
        trainer, x, y = self._trained()
        xv, yv = x[72:], np.eye(3, dtype=np.float32)[y[72:]]
        logs = trainer.evaluate(x[72:], y[72:])
        p = trainer.predict(xv)
        for name, cls in [("precision", "Precision"), ("recall", "Recall"), ("auc", "AUC")]:
            expected = _keras_whole(keras, cls, p, yv)
            assert logs[name] == pytest.approx(expected, rel=1e-6)
            assert trainer.history[f"val_{name}"][-1] == logs[name]


def _keras_whole(keras: ModuleType, cls: str, out: np.ndarray, y: np.ndarray) -> float:
    m = getattr(keras.metrics, cls)()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        m.update_state(y, out)
        return float(m.result())
