"""service/spec/optimizers.py and schedules.py: every Keras optimizer's names and defaults,
learning-rate schedules in fitq's form and as Keras serializes them, gradient clipping,
and what is refused (with its location)."""

from __future__ import annotations

from typing import Any

import pytest

from fitq.service.spec import parse_spec
from tests.spec.conftest import refused, spec_dict

NO_CLIP = {"clipnorm": None, "clipvalue": None, "global_clipnorm": None}
COMMON = {"weight_decay": 0.0, **NO_CLIP}


def optimizer(value: Any) -> dict[str, Any]:
    body = spec_dict(compile={"optimizer": value, "loss": "sparse_categorical_crossentropy"})
    result: dict[str, Any] = parse_spec(body).model_dump(mode="json")["compile"]["optimizer"]
    return result


def keras_schedule(class_name: str, **config: Any) -> dict[str, Any]:
    """A schedule as Keras 3 serializes it inside an optimizer's config."""
    return {
        "module": "keras.optimizers.schedules",
        "class_name": class_name,
        "config": {**config, "name": class_name},
        "registered_name": None,
    }


class TestNewOptimizers:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("adamax", {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}),
            ("nadam", {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}),
            ("adadelta", {"rho": 0.95, "epsilon": 1e-7}),
            ("lion", {"beta_1": 0.9, "beta_2": 0.99}),
            (
                "ftrl",
                {
                    "learning_rate_power": -0.5,
                    "initial_accumulator_value": 0.1,
                    "l1_regularization_strength": 0.0,
                    "l2_regularization_strength": 0.0,
                    "l2_shrinkage_regularization_strength": 0.0,
                    "beta": 0.0,
                },
            ),
        ],
    )
    def test_keras_defaults(self, name: str, expected: dict[str, Any]) -> None:
        assert optimizer(name) == {"name": name, "learning_rate": 0.001, **COMMON, **expected}

    @pytest.mark.parametrize(
        ("spelling", "name"), [("Adamax", "adamax"), ("Nadam", "nadam"), ("Ftrl", "ftrl")]
    )
    def test_keras_spellings(self, spelling: str, name: str) -> None:
        assert optimizer(spelling)["name"] == name

    def test_keras_serialized_ftrl(self) -> None:
        keras = {
            "module": "keras.optimizers",
            "class_name": "Ftrl",
            "config": {
                "name": "ftrl", "learning_rate": 0.05000000074505806, "weight_decay": None,
                "clipnorm": None, "global_clipnorm": 2.0, "clipvalue": None, "use_ema": False,
                "ema_momentum": 0.99, "ema_overwrite_frequency": None, "loss_scale_factor": None,
                "gradient_accumulation_steps": None, "learning_rate_power": -0.5,
                "initial_accumulator_value": 0.1, "l1_regularization_strength": 0.01,
                "l2_regularization_strength": 0.0, "l2_shrinkage_regularization_strength": 0.0,
                "beta": 0.0,
            },
            "registered_name": None,
        }  # fmt: skip
        result = optimizer(keras)
        assert result["learning_rate"] == 0.05 and result["global_clipnorm"] == 2.0
        assert result["l1_regularization_strength"] == 0.01

    @pytest.mark.parametrize(
        ("value", "loc", "words"),
        [
            ({"name": "lion", "beta_1": 0.0}, ["beta_1"], "> 0"),
            ({"name": "ftrl", "learning_rate_power": 0.5}, ["learning_rate_power"], "≤ 0"),
            ({"name": "ftrl", "initial_accumulator_value": 0.0}, ["initial_accumulator_value"],
             "> 0"),
            ({"name": "adadelta", "rho": 1.0}, ["rho"], "< 1"),
            ({"name": "adam", "clipnorm": 1.0, "global_clipnorm": 1.0}, ["global_clipnorm"],
             "at most one of clipnorm, clipvalue, global_clipnorm"),
            ({"name": "adam", "clipvalue": 0.0}, ["clipvalue"], "> 0"),
            ({"class_name": "Adam", "config": {"use_ema": True}}, [], "use_ema=true"),
        ],
    )  # fmt: skip
    def test_refused_naming_the_field(self, value: Any, loc: list[Any], words: str) -> None:
        body = spec_dict(compile={"optimizer": value, "loss": "mse"})
        error = refused(body)
        assert error.loc == ["body", "compile", "optimizer", *loc]
        assert words in error.message


class TestSchedules:
    def test_fitq_form_gets_keras_defaults(self) -> None:
        rate = {"schedule": "cosine_decay", "initial_learning_rate": 0.1, "decay_steps": 100}
        assert optimizer({"name": "adam", "learning_rate": rate})["learning_rate"] == {
            "schedule": "cosine_decay",
            "initial_learning_rate": 0.1,
            "decay_steps": 100.0,
            "alpha": 0.0,
            "warmup_target": None,
            "warmup_steps": 0.0,
        }

    @pytest.mark.parametrize(
        ("keras", "expected"),
        [
            (
                keras_schedule("ExponentialDecay", initial_learning_rate=0.1, decay_steps=1000,
                               decay_rate=0.96, staircase=True),
                {"schedule": "exponential_decay", "initial_learning_rate": 0.1,
                 "decay_steps": 1000.0, "decay_rate": 0.96, "staircase": True},
            ),
            (
                keras_schedule("PiecewiseConstantDecay", boundaries=[100, 200],
                               values=[0.1, 0.01, 0.001]),
                {"schedule": "piecewise_constant_decay", "boundaries": [100.0, 200.0],
                 "values": [0.1, 0.01, 0.001]},
            ),
            (
                keras_schedule("InverseTimeDecay", initial_learning_rate=0.1, decay_steps=10,
                               decay_rate=0.5, staircase=False),
                {"schedule": "inverse_time_decay", "initial_learning_rate": 0.1,
                 "decay_steps": 10.0, "decay_rate": 0.5, "staircase": False},
            ),
            (
                keras_schedule("PolynomialDecay", initial_learning_rate=0.1, decay_steps=10,
                               end_learning_rate=0.0001, power=1.0, cycle=False),
                {"schedule": "polynomial_decay", "initial_learning_rate": 0.1,
                 "decay_steps": 10.0, "end_learning_rate": 0.0001, "power": 1.0,
                 "cycle": False},
            ),
            (
                keras_schedule("CosineDecay", initial_learning_rate=0.0, decay_steps=1000,
                               alpha=0.0, warmup_target=0.001, warmup_steps=100),
                {"schedule": "cosine_decay", "initial_learning_rate": 0.0,
                 "decay_steps": 1000.0, "alpha": 0.0, "warmup_target": 0.001,
                 "warmup_steps": 100.0},
            ),
            (
                {"class_name": "CosineDecayRestarts",  # tf.keras 2's form
                 "config": {"initial_learning_rate": 0.1, "first_decay_steps": 50,
                            "t_mul": 2.0, "m_mul": 1.0, "alpha": 0.0, "name": "SGDRDecay"}},
                {"schedule": "cosine_decay_restarts", "initial_learning_rate": 0.1,
                 "first_decay_steps": 50.0, "t_mul": 2.0, "m_mul": 1.0, "alpha": 0.0},
            ),
        ],
    )  # fmt: skip
    def test_as_keras_serializes_them(self, keras: Any, expected: dict[str, Any]) -> None:
        wrapped = {"class_name": "SGD", "config": {"learning_rate": keras, "momentum": 0.9}}
        assert optimizer(wrapped)["learning_rate"] == expected

    def test_tf_keras_2s_decay_is_an_inverse_time_decay(self) -> None:
        """tf.keras 2's optimizers: lr / (1 + decay·iterations)."""
        legacy = {"class_name": "Adam", "config": {"learning_rate": 0.01, "decay": 0.001}}
        assert optimizer(legacy)["learning_rate"] == {
            "schedule": "inverse_time_decay",
            "initial_learning_rate": 0.01,
            "decay_steps": 1.0,
            "decay_rate": 0.001,
            "staircase": False,
        }

    @pytest.mark.parametrize(
        ("rate", "loc", "words"),
        [
            ({"schedule": "step_decay"}, [], "unknown learning-rate schedule 'step_decay'"),
            ({"schedule": "exponential_decay", "initial_learning_rate": 0.1, "decay_steps": 0,
              "decay_rate": 0.5}, ["decay_steps"], "> 0"),
            ({"schedule": "exponential_decay", "initial_learning_rate": 0.1}, ["decay_steps"],
             "required"),
            ({"schedule": "piecewise_constant_decay", "boundaries": [5, 1],
              "values": [0.1, 0.01, 0.001]}, ["boundaries"], "strictly increasing"),
            ({"schedule": "cosine_decay_restarts", "initial_learning_rate": 0.1,
              "first_decay_steps": 10, "t_mul": 0.5}, ["t_mul"], "≥ 1"),
            ({"schedule": "cosine_decay", "initial_learning_rate": 0.1, "decay_steps": 10,
              "alpha": 2.0}, ["alpha"], "≤ 1"),
            (-0.1, [], "> 0"),
            ({"class_name": "MySchedule", "config": {}}, [], "unknown learning-rate schedule"),
        ],
    )  # fmt: skip
    def test_refused_naming_the_field(self, rate: Any, loc: list[Any], words: str) -> None:
        body = spec_dict(compile={"optimizer": {"name": "sgd", "learning_rate": rate},
                                  "loss": "mse"})  # fmt: skip
        error = refused(body)
        assert error.loc == ["body", "compile", "optimizer", "learning_rate", *loc]
        assert words in error.message

    def test_ftrl_refuses_a_schedule_that_reaches_zero(self) -> None:
        rate = {"schedule": "cosine_decay", "initial_learning_rate": 0.1, "decay_steps": 10}
        error = refused(spec_dict(compile={"optimizer": {"name": "ftrl", "learning_rate": rate},
                                           "loss": "mse"}))  # fmt: skip
        assert error.loc == ["body", "compile", "optimizer", "learning_rate"]
        assert "ftrl divides by the learning rate" in error.message
        optimizer({"name": "ftrl", "learning_rate": {**rate, "alpha": 0.01}})  # accepted


class TestRefusedOptimizers:
    """docs/keras.md's refused rows: each a 422 naming the optimizer."""

    @pytest.mark.parametrize(
        "class_name",
        ["Lamb", "Adafactor", "Muon", "SchedulefreeAdamW", "LossScaleOptimizer", "MultiOptimizer"],
    )
    def test_refused_by_name(self, class_name: str) -> None:
        keras = {"module": "keras.optimizers", "class_name": class_name, "config": {}}
        error = refused(spec_dict(compile={"optimizer": keras, "loss": "mse"}))
        assert error.loc == ["body", "compile", "optimizer"]
        assert f"unknown optimizer '{class_name}'" in error.message

    @pytest.mark.parametrize(
        ("key", "value"),
        [("use_ema", True), ("gradient_accumulation_steps", 4), ("loss_scale_factor", 128.0)],
    )
    def test_refused_options(self, key: str, value: Any) -> None:
        keras = {"class_name": "Adam", "config": {key: value}}
        error = refused(spec_dict(compile={"optimizer": keras, "loss": "mse"}))
        assert f"{key}=" in error.message and "is not supported" in error.message
