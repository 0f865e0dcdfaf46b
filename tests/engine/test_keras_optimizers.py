"""Keras itself (3.x, torch backend, float64) as the reference where fitq follows Keras:
Lion and FTRL (torch.optim has neither), NAdam and Adadelta (torch's rules, which equal
Keras' with Keras' momentum schedule), weight decay on those, every learning-rate
schedule, and gradient clipping. Each Keras object goes through fitq's spec as Keras
serializes it (`keras.optimizers.serialize`), so the import path is tested too."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from fitq.service.spec import parse_spec
from fitq.worker.engine import Trainer, optimizers
from fitq.worker.engine.optimizers import schedules
from tests.engine.helpers import blobs, normalized
from tests.support.keras_reference import keras_on_torch

STEPS = 40


@pytest.fixture(scope="module")
def keras(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """Keras 3 on the torch backend, computing in float64."""
    with keras_on_torch(tmp_path_factory, floatx="float64") as module:
        yield module


def _serialized(keras: ModuleType, obj: Any) -> dict[str, Any]:
    """Keras' own serialization of an optimizer or schedule (its numpy 2 deprecation
    warning, from Keras' code, silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return dict(keras.saving.serialize_keras_object(obj))


def _params() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=(5, 4)), rng.normal(size=4), rng.normal(size=3)]


def _grad(p: torch.Tensor, step: int) -> torch.Tensor:
    return torch.sin(3.0 * p) + 0.5 * p + 0.1 * np.cos(step)


def _keras_trajectory(keras: ModuleType, opt: Any) -> list[list[np.ndarray]]:
    variables = [keras.Variable(p, dtype="float64") for p in _params()]
    out = []
    with warnings.catch_warnings():  # Keras' own numpy 2 deprecation warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        for step in range(STEPS):
            grads = [_grad(v.value.detach().clone(), step) for v in variables]  # torch backend
            opt.apply(grads, variables)
            out.append([v.value.detach().numpy().copy() for v in variables])
    return out


def _fitq_trajectory(serialized: dict[str, Any], foreach: bool) -> list[list[np.ndarray]]:
    """fitq's optimizer made from Keras' serialized one, through the spec."""
    cfg = optimizers.make_config(normalized("optimizer", serialized))
    params = [torch.from_numpy(p.copy()) for p in _params()]
    opt = optimizers.Optimizer(cfg, params, foreach=foreach)
    out = []
    for step in range(STEPS):
        opt.step([_grad(p, step) for p in params])
        out.append([p.numpy().copy() for p in params])
    return out


def _keras_optimizers(keras: ModuleType) -> dict[str, Any]:
    o, s = keras.optimizers, keras.optimizers.schedules
    return {
        "lion": o.Lion(learning_rate=0.01),
        "lion_decay": o.Lion(learning_rate=0.02, beta_1=0.5, beta_2=0.9, weight_decay=0.1),
        "lion_schedule": o.Lion(learning_rate=s.CosineDecay(0.05, 30, alpha=0.1)),
        "ftrl": o.Ftrl(learning_rate=0.1),
        "ftrl_regularized": o.Ftrl(
            learning_rate=0.2, learning_rate_power=-0.7, initial_accumulator_value=0.5,
            l1_regularization_strength=0.05, l2_regularization_strength=0.1,
            l2_shrinkage_regularization_strength=0.02, beta=0.3, weight_decay=0.05,
        ),
        "ftrl_schedule": o.Ftrl(learning_rate=s.InverseTimeDecay(0.3, 5, 0.5)),
        "nadam": o.Nadam(learning_rate=0.01),
        "nadam_schedule": o.Nadam(learning_rate=s.ExponentialDecay(0.02, 10, 0.7)),
        "adadelta": o.Adadelta(learning_rate=1.0, rho=0.9, epsilon=1e-6),
        "sgd_clipnorm": o.SGD(learning_rate=0.1, momentum=0.5, clipnorm=0.5),
        "sgd_global_clipnorm": o.SGD(learning_rate=0.1, global_clipnorm=0.7),
        "sgd_clipvalue": o.SGD(learning_rate=0.1, clipvalue=0.3),
        "adam_clipnorm_schedule": o.Adam(  # ε → 0: Keras' ε sits elsewhere than torch's
            learning_rate=s.PiecewiseConstantDecay([10, 25], [0.01, 0.005, 0.001]),
            clipnorm=1.0,
            epsilon=1e-15,
        ),
    }  # fmt: skip


CASES = [
    "lion", "lion_decay", "lion_schedule", "ftrl", "ftrl_regularized", "ftrl_schedule",
    "nadam", "nadam_schedule", "adadelta", "sgd_clipnorm", "sgd_global_clipnorm",
    "sgd_clipvalue", "adam_clipnorm_schedule",
]  # fmt: skip


class TestAgainstKeras:
    @pytest.mark.parametrize("case", CASES)
    @pytest.mark.parametrize("foreach", [False, True], ids=["per_tensor", "foreach"])
    def test_trajectory_equals_keras(self, keras: ModuleType, case: str, foreach: bool) -> None:
        keras_opt = _keras_optimizers(keras)[case]
        serialized = _serialized(keras, keras_opt)
        theirs = _keras_trajectory(keras, keras_opt)
        ours = _fitq_trajectory(serialized, foreach)
        # Keras computes a clip's scale in float32 (its type promotion of a Python float)
        rtol, atol = (1e-6, 1e-8) if "clip" in case else (1e-9, 1e-12)
        for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                np.testing.assert_allclose(
                    x, y, rtol=rtol, atol=atol, err_msg=f"{case}: step {step + 1}, tensor {i}"
                )


def _keras_schedules(keras: ModuleType) -> dict[str, Any]:
    s = keras.optimizers.schedules
    return {
        "exponential": s.ExponentialDecay(0.1, 7, 0.8),
        "exponential_staircase": s.ExponentialDecay(0.1, 7, 0.8, staircase=True),
        "inverse_time": s.InverseTimeDecay(0.1, 5, 0.5),
        "inverse_time_staircase": s.InverseTimeDecay(0.1, 5, 0.5, staircase=True),
        "piecewise": s.PiecewiseConstantDecay([10, 20, 35], [0.1, 0.05, 0.01, 0.001]),
        "polynomial": s.PolynomialDecay(0.1, 30, end_learning_rate=0.001, power=2.0),
        "polynomial_cycle": s.PolynomialDecay(0.1, 17, power=0.5, cycle=True),
        "cosine": s.CosineDecay(0.1, 40, alpha=0.05),
        "cosine_warmup": s.CosineDecay(0.0, 40, warmup_target=0.2, warmup_steps=15),
        "cosine_restarts": s.CosineDecayRestarts(0.1, 10, t_mul=2.0, m_mul=0.8, alpha=0.01),
        "cosine_restarts_even": s.CosineDecayRestarts(0.1, 8, t_mul=1.0, m_mul=0.5),
        "cosine_restarts_odd": s.CosineDecayRestarts(0.1, 7, t_mul=1.5),
    }


class TestSchedulesAgainstKeras:
    @pytest.mark.parametrize(
        "case",
        [
            "exponential", "exponential_staircase", "inverse_time", "inverse_time_staircase",
            "piecewise", "polynomial", "polynomial_cycle", "cosine", "cosine_warmup",
            "cosine_restarts", "cosine_restarts_even", "cosine_restarts_odd",
        ],
    )  # fmt: skip
    def test_every_step_equals_keras(self, keras: ModuleType, case: str) -> None:
        theirs = _keras_schedules(keras)[case]
        serialized = _serialized(keras, theirs)
        spec = normalized("optimizer", {"name": "sgd", "learning_rate": serialized})
        ours = schedules.make(spec["learning_rate"], "learning_rate")
        for step in range(120):
            expected = float(theirs(step))
            assert ours(step) == pytest.approx(expected, rel=1e-12, abs=1e-15), (case, step)

    def test_restarts_begin_exactly_where_the_periods_end(self) -> None:
        """10, 20, 40 steps (t_mul 2): a restart at steps 10, 30 and 70 — the index is
        computed exactly, not from a logarithm that may round below a whole number."""
        restarts = schedules.CosineDecayRestarts(
            initial_learning_rate=1.0, first_decay_steps=10.0, t_mul=2.0, m_mul=1.0, alpha=0.0
        )
        for step in (0, 10, 30, 70, 150):
            assert restarts(step) == 1.0
            assert restarts(step - 1) < 0.03 if step else True


def _compiled_export(keras: ModuleType, optimizer: Any) -> str:
    """A real Keras export: a compiled Sequential's `to_json()` (with its compile_config)."""
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
         keras.layers.Dense(3, activation="softmax")]
    )  # fmt: skip
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["acc"])
    return str(model.to_json())


class TestKerasExportsTrain:
    @pytest.mark.parametrize(
        "name",
        ["SGD", "RMSprop", "Adagrad", "Adadelta", "Adam", "AdamW", "Adamax", "Nadam", "Lion",
         "Ftrl"],
    )  # fmt: skip
    def test_a_compiled_model_with_a_schedule_and_a_clip_trains(self, keras, name) -> None:
        s = keras.optimizers.schedules
        rate = s.ExponentialDecay(0.05 if name != "Lion" else 0.005, 20, 0.9)
        optimizer = getattr(keras.optimizers, name)(learning_rate=rate, clipnorm=1.0)
        body = {"keras_json": _compiled_export(keras, optimizer), "dataset_id": "d",
                "fit": {"epochs": 5, "batch_size": 16}}  # fmt: skip
        spec = parse_spec(body).model_dump(mode="json")
        assert spec["compile"]["optimizer"]["name"] == name.lower()
        assert spec["compile"]["optimizer"]["clipnorm"] == 1.0
        assert spec["compile"]["optimizer"]["learning_rate"]["schedule"] == "exponential_decay"
        trainer = Trainer(spec["model"], spec["compile"], spec["fit"], spec["seed"], "cpu")
        x, y = blobs(n=160)
        history = trainer.fit(x, y)
        assert history["loss"][-1] < history["loss"][0], name
