"""The engine learns: scikit-learn's bundled digits (classification) and diabetes
(regression), standardized, 80/20 split with random_state 0."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from fitq.worker.engine import Trainer
from tests.engine.helpers import cuda, dense, requires_cuda, spec

REFERENCE_LAYERS = [dense(128, "relu"), dense(64, "relu"), dense(10, "softmax")]


def _digits():
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    scaler = StandardScaler().fit(x_tr)
    return (
        scaler.transform(x_tr).astype(np.float32),
        y_tr.astype(np.int64),
        scaler.transform(x_te).astype(np.float32),
        y_te.astype(np.int64),
    )


def _digits_run(device: str) -> tuple[dict, dict]:
    x_tr, y_tr, x_te, y_te = _digits()
    t = Trainer(
        **spec(REFERENCE_LAYERS, input_dim=64, optimizer="adam", epochs=20, batch_size=32),
        device=device,
    )
    history = t.fit(x_tr, y_tr)
    return history, t.evaluate(x_te, y_te)


class TestDigits:
    def test_reference_model_reaches_95_percent(self):
        history, test = _digits_run("cpu")
        assert history["loss"][-1] < history["loss"][0]
        assert test["accuracy"] >= 0.95

    @cuda
    @requires_cuda
    def test_reference_model_on_cuda(self):
        _, test = _digits_run("cuda")
        assert test["accuracy"] >= 0.95


class TestDiabetes:
    """Least squares reaches 0.67 of the test targets' variance on this split: a small
    network trained briefly should come as close (longer runs overfit 353 rows)."""

    @pytest.mark.parametrize(
        "optimizer",
        [
            {"name": "adam", "learning_rate": 0.01},
            {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9},
        ],
    )
    def test_regression_learns(self, optimizer):
        x, y = load_diabetes(return_X_y=True)
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=0)
        mean, std = y_tr.mean(), y_tr.std()
        t = Trainer(
            **spec(
                [dense(32, "relu"), dense(1)],
                input_dim=10,
                optimizer=optimizer,
                loss="mse",
                metrics=["mae"],
                epochs=10,
                batch_size=32,
                normalize=True,
            ),
            device="cpu",
        )
        history = t.fit(x_tr.astype(np.float32), ((y_tr - mean) / std).astype(np.float32))
        assert history["loss"][-1] < 0.6 * history["loss"][0]
        test = t.evaluate(x_te.astype(np.float32), ((y_te - mean) / std).astype(np.float32))
        target_variance = float(np.var((y_te - mean) / std))
        assert test["loss"] < 0.75 * target_variance
        assert set(test) == {"loss", "mae"}
