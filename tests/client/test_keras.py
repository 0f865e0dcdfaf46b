"""Keras in, Keras out, with the client against a live ``fitq up``: a compiled Keras model
object fit on fitq, the trained model back as a Keras model (``job.to_keras()``) and as
ONNX, each predicting what ``job.predict`` returns; ``job.evaluate`` equal to the job's
test metrics on the same data."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from fitq.service.client import Client
from tests.support.keras_reference import IGNORE_ARRAY_COPY_WARNING, keras_on_torch
from tests.support.stack import Stack, fitq_up

pytestmark = [
    pytest.mark.slow,
    IGNORE_ARRAY_COPY_WARNING,
]

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with fitq_up(tmp_path_factory.mktemp("client-keras")) as running:
        yield running


@pytest.fixture(scope="module")
def keras(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """Keras 3 on the torch backend (the backend is chosen when keras is first imported)."""
    with keras_on_torch(tmp_path_factory) as module:
        yield module


def test_a_keras_model_fits_on_fitq_and_comes_back_as_keras(
    live: Stack, keras: ModuleType, tmp_path: Path
) -> None:
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.2, stratify=digits.target, random_state=0
    )
    model = keras.Sequential(
        [
            keras.Input(shape=(64,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    with Client(live.url, live.key) as client:
        history = client.fit(
            model, x_train, y_train, epochs=4, test_data=(x_test, y_test), verbose=0
        )
        job = history.job
        fitq_probabilities = job.predict(x_test)
        trained = job.to_keras()
        datasets_before = client.datasets()
        evaluated = job.evaluate(x_test, y_test)
        on_builtin = job.evaluate(dataset="digits")
        onnx_path = tmp_path / "model.onnx"
        job.download(onnx_path, format="onnx")
        datasets_after = client.datasets()

    assert job["spec"]["compile"]["optimizer"]["name"] == "adam"
    assert [layer["units"] for layer in job["spec"]["model"]["layers"]] == [32, 10]
    np.testing.assert_allclose(
        trained.predict(x_test, verbose=0), fitq_probabilities, atol=TOLERANCE
    )
    onnxruntime = importlib.import_module("onnxruntime")
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    (onnx_out,) = session.run(None, {name: x_test.astype(np.float32)})
    np.testing.assert_allclose(onnx_out, fitq_probabilities, atol=TOLERANCE)
    assert evaluated == pytest.approx(job.test_metrics, rel=1e-6, abs=1e-9)
    assert set(on_builtin) == {"loss", "accuracy"} and on_builtin["accuracy"] > 0.8
    assert datasets_after == datasets_before  # evaluate(x, y) deleted its upload


def test_an_uncompiled_keras_model_is_refused_before_anything_is_sent(
    live: Stack, keras: ModuleType
) -> None:
    model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(3)])
    with Client(live.url, live.key) as client:
        before = client.datasets()
        with pytest.raises(ValueError, match="compile"):
            client.fit(model, np.zeros((4, 4)), np.zeros(4, dtype=int), epochs=1)
        assert client.datasets() == before
