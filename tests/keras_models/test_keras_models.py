"""Real Keras exports (generate.py, one per row of docs/keras.md's layers, losses and
metrics) as a user submits them: refused with the reason, or accepted and trained — to
Keras' own History, epoch by epoch, from Keras' own initial weights, where training draws
no noise; to Keras' own predictions where it does."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from fitq.service.errors import InvalidSpec
from fitq.service.spec import parse_spec
from fitq.worker.engine import Trainer
from tests.keras_models.generate import CASES, FEATURES, IMAGE, Case
from tests.support.keras_reference import IGNORE_ARRAY_COPY_WARNING, keras_on_torch

HERE = Path(__file__).parent
ROWS = 96
FIT = {"epochs": 2, "batch_size": 16, "shuffle": False, "validation_split": 0.25}

pytestmark = IGNORE_ARRAY_COPY_WARNING


@pytest.fixture(scope="module")
def keras(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """Keras 3 on the torch backend."""
    with keras_on_torch(tmp_path_factory) as module:
        yield module


def export(name: str) -> str:
    return (HERE / f"{name}.json").read_text()


def data(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """Rows (flat) and targets of the case's kind, learnable from the rows."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, FEATURES)).astype(np.float32)
    score = x @ rng.normal(size=(FEATURES, 8))
    labels, labels8 = score[:, :3].argmax(1), score.argmax(1)
    score = score[:, :3]
    y = {
        "classes": labels,
        "onehot": np.eye(3)[labels],
        "classes8": labels8,
        "onehot8": np.eye(8)[labels8],
        "binary": (score[:, :1] > 0),
        "multilabel": (score > 0),
        "signed": np.where(score[:, :1] > 0, 1.0, -1.0),
        "values": score[:, :2],
        "positive": np.round(np.exp(score[:, :1] / 2)),
        "distribution": np.exp(score) / np.exp(score).sum(1, keepdims=True),
    }[case.targets]
    return x, y.astype(np.int64 if case.targets.startswith("classes") else np.float32)


def fitq_trainer(name: str) -> Trainer:
    body = {"keras_json": export(name), "fit": FIT, "dataset_id": "d"}
    stored = parse_spec(body).model_dump(mode="json")
    return Trainer(stored["model"], stored["compile"], stored["fit"], stored["seed"], "cpu")


def keras_model(keras: ModuleType, name: str) -> Any:
    """The export rebuilt and compiled by Keras itself."""
    text = export(name)
    model = keras.models.model_from_json(text)
    model.compile_from_config(json.loads(text)["compile_config"])
    return model


def keras_weights(model: Any) -> dict[str, torch.Tensor]:
    """Keras' weights by fitq's names: the i-th layer's `kernel` is `layers.{i}.kernel`."""
    return {
        f"layers.{i}.{v.name}": torch.from_numpy(np.array(v.numpy()))
        for i, layer in enumerate(model.layers)
        for v in layer.weights
    }


def keras_rows(case: Case, x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), *IMAGE) if case.image else x


ACCEPTED = [n for n, c in CASES.items() if c.refused is None]
REFUSED = [n for n, c in CASES.items() if c.refused is not None]


class TestExports:
    def test_every_case_has_its_export(self) -> None:
        assert {p.stem for p in HERE.glob("*.json")} == set(CASES)

    @pytest.mark.parametrize("name", REFUSED)
    def test_refused_with_the_reason(self, name: str) -> None:
        with pytest.raises(InvalidSpec) as info:
            parse_spec({"keras_json": export(name), "dataset_id": "d"})
        assert CASES[name].refused in info.value.message, info.value.message
        assert info.value.loc[:2] in (["body", "keras_json"], ["body", "compile_config"])


class TestAgainstKeras:
    @pytest.mark.parametrize("name", [n for n in ACCEPTED if not CASES[n].random])
    def test_trains_to_keras_history(self, name: str, keras: ModuleType) -> None:
        case = CASES[name]
        x, y = data(case)
        model = keras_model(keras, name)
        trainer = fitq_trainer(name)
        with torch.no_grad():
            trainer.model.load_named_tensors(keras_weights(model))
        history = model.fit(keras_rows(case, x), y, verbose=0, **FIT).history
        ours = trainer.fit(x, y)
        assert set(history) <= set(ours), sorted(set(history) - set(ours))
        for key, values in history.items():
            np.testing.assert_allclose(ours[key], values, rtol=2e-4, atol=2e-5, err_msg=key)

    @pytest.mark.parametrize("name", ACCEPTED)
    def test_predicts_as_keras(self, name: str, keras: ModuleType) -> None:
        case = CASES[name]
        x, y = data(case)
        model = keras_model(keras, name)
        trainer = fitq_trainer(name)
        with torch.no_grad():
            trainer.model.load_named_tensors(keras_weights(model))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Keras' own, about its model build
            expected = model.predict(keras_rows(case, x), verbose=0)
        np.testing.assert_allclose(trainer.predict(x), expected, rtol=1e-5, atol=1e-6)
        trainer.fit(x, y)  # and it trains
        assert np.isfinite(trainer.history["loss"]).all()
