"""service/spec/: normalization to the contract (docs/spec-contract.md), Keras names and
defaults, fitq's aliases."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fitq.service.spec import parse_spec
from tests.spec.conftest import SPEC_EXAMPLE, refused, spec_dict

DENSE_DEFAULTS = {
    "use_bias": True,
    "kernel_initializer": {"name": "glorot_uniform"},
    "bias_initializer": {"name": "zeros"},
    "kernel_regularizer": None,
    "kernel_constraint": None,
    "bias_constraint": None,
}


def compiled(**compile_: Any) -> dict[str, Any]:
    """The normalized ``compile`` of SPEC §2's example with ``compile`` replaced."""
    return parse_spec(spec_dict(compile=compile_)).model_dump(mode="json")["compile"]


def optimizer(value: Any, loss: str = "sparse_categorical_crossentropy") -> dict[str, Any]:
    result: dict[str, Any] = compiled(optimizer=value, loss=loss)["optimizer"]
    return result


NO_CLIP = {"clipnorm": None, "clipvalue": None, "global_clipnorm": None}


class TestContract:
    def test_spec_example_dumps_exactly_the_contract(self) -> None:
        dumped = parse_spec(SPEC_EXAMPLE).model_dump(mode="json")
        assert dumped == {
            "model": {
                "input_dim": 784,
                "input_shape": [784],
                "layers": [
                    {"type": "dense", "units": 128, "activation": "relu", **DENSE_DEFAULTS},
                    {"type": "dropout", "rate": 0.2},
                    {"type": "dense", "units": 64, "activation": "relu", **DENSE_DEFAULTS},
                    {"type": "dense", "units": 10, "activation": "softmax", **DENSE_DEFAULTS},
                ],
            },
            "compile": {
                "optimizer": {
                    "name": "adam",
                    "learning_rate": 0.001,
                    "beta_1": 0.9,
                    "beta_2": 0.999,
                    "epsilon": 1e-07,
                    "amsgrad": False,
                    "weight_decay": 0.0,
                    **NO_CLIP,
                },
                "loss": {"name": "sparse_categorical_crossentropy", "from_logits": False},
                "metrics": ["accuracy"],
            },
            "fit": {
                "epochs": 10,
                "batch_size": 32,
                "validation_split": 0.1,
                "shuffle": True,
                "early_stopping": {
                    "monitor": "val_loss",
                    "min_delta": 0.0,
                    "patience": 3,
                    "mode": "auto",
                    "baseline": None,
                    "restore_best_weights": False,
                    "start_from_epoch": 0,
                },
                "reduce_lr_on_plateau": None,
                "normalize": False,
            },
            "seed": 0,
            "name": "mnist-mlp",
            "priority": 0,
            "max_attempts": 3,
            "max_seconds": None,
            "dataset_id": "ds_train",
            "validation_dataset_id": None,
            "test_dataset_id": "ds_test",
        }

    def test_dump_is_valid_json_and_validates_to_itself(self) -> None:
        dumped = parse_spec(SPEC_EXAMPLE).model_dump(mode="json")
        again = parse_spec(json.dumps(dumped)).model_dump(mode="json")
        assert again == dumped

    def test_reference_keras_snippet_equivalent(self) -> None:
        """SPEC's snippet: Dense(128, relu, input_shape=(784,)), …, compile('adam'), fit(10)."""
        spec = parse_spec(
            {
                "model": {
                    "input_dim": 784,
                    "layers": [
                        {"type": "dense", "units": 128, "activation": "relu"},
                        {"type": "dense", "units": 64, "activation": "relu"},
                        {"type": "dense", "units": 10, "activation": "softmax"},
                    ],
                },
                "compile": {
                    "optimizer": "adam",
                    "loss": "sparse_categorical_crossentropy",
                    "metrics": ["accuracy"],
                },
                "fit": {"epochs": 10},
                "dataset_id": "mnist",
                "test_dataset_id": "mnist_test",
            }
        ).model_dump(mode="json")
        assert spec["compile"]["optimizer"] == optimizer({"name": "adam", "learning_rate": 0.001})
        assert spec["fit"] == {
            "epochs": 10,
            "batch_size": 32,
            "validation_split": 0.0,
            "shuffle": True,
            "early_stopping": None,
            "reduce_lr_on_plateau": None,
            "normalize": False,
        }
        assert [layer["units"] for layer in spec["model"]["layers"]] == [128, 64, 10]
        assert spec["seed"] == 0 and spec["max_attempts"] == 3 and spec["name"] is None

    def test_defaults_when_only_the_required_is_given(self) -> None:
        dumped = parse_spec(
            {
                "model": {"input_dim": 3, "layers": [{"type": "dense", "units": 1}]},
                "compile": {"loss": "mse"},
                "dataset_id": "d",
            }
        ).model_dump(mode="json")
        assert dumped["model"]["layers"][0] == {
            "type": "dense",
            "units": 1,
            "activation": "linear",
            **DENSE_DEFAULTS,
        }
        assert dumped["compile"]["optimizer"]["name"] == "rmsprop"  # Keras' compile() default
        assert dumped["compile"]["loss"] == {"name": "mean_squared_error"}
        assert dumped["compile"]["metrics"] == []
        assert dumped["fit"]["epochs"] == 1 and dumped["fit"]["batch_size"] == 32

    def test_every_layer_type_normalized(self) -> None:
        layers = [
            {"type": "BatchNormalization"},
            {"type": "dense", "units": 8, "activation": None, "kernel_regularizer": "l2"},
            {"type": "layer_normalization", "epsilon": 1e-5},
            {"type": "Activation", "activation": "Swish"},
            {"type": "dropout", "rate": 0},
            {"type": "dense", "units": 1, "activation": "sigmoid"},
        ]
        dumped = parse_spec(
            spec_dict(
                model={"input_dim": 4, "layers": layers},
                compile={"loss": "binary_crossentropy", "metrics": ["acc"]},
                fit={},
            )
        ).model_dump(mode="json")["model"]["layers"]
        assert dumped[0] == {
            "type": "batch_normalization",
            "momentum": 0.99,
            "epsilon": 0.001,
            "center": True,
            "scale": True,
        }
        assert dumped[1]["activation"] == "linear"
        assert dumped[1]["kernel_regularizer"] == {"l1": 0.0, "l2": 0.01}
        assert dumped[2] == {
            "type": "layer_normalization",
            "epsilon": 1e-5,
            "center": True,
            "scale": True,
        }
        assert dumped[3] == {"type": "activation", "activation": "silu"}
        assert dumped[4] == {"type": "dropout", "rate": 0.0}


class TestOptimizerDefaults:
    """A bare name gets Keras' defaults; every key is present after normalization."""

    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            (
                "sgd",
                {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0,
                 **NO_CLIP},  # fmt: skip
            ),
            (
                "adagrad",
                {
                    "learning_rate": 0.001,
                    "initial_accumulator_value": 0.1,
                    "epsilon": 1e-7,
                    "weight_decay": 0.0,
                    **NO_CLIP,
                },
            ),
            (
                "rmsprop",
                {
                    "learning_rate": 0.001,
                    "rho": 0.9,
                    "momentum": 0.0,
                    "epsilon": 1e-7,
                    "centered": False,
                    "weight_decay": 0.0,
                    **NO_CLIP,
                },
            ),
            (
                "adam",
                {
                    "learning_rate": 0.001,
                    "beta_1": 0.9,
                    "beta_2": 0.999,
                    "epsilon": 1e-7,
                    "amsgrad": False,
                    "weight_decay": 0.0,
                    **NO_CLIP,
                },
            ),
            (
                "adamw",
                {
                    "learning_rate": 0.001,
                    "beta_1": 0.9,
                    "beta_2": 0.999,
                    "epsilon": 1e-7,
                    "amsgrad": False,
                    "weight_decay": 0.004,
                    **NO_CLIP,
                },
            ),
        ],
    )
    def test_bare_name_gets_keras_defaults(self, name: str, expected: dict[str, Any]) -> None:
        assert optimizer(name) == {"name": name, **expected}

    @pytest.mark.parametrize(
        ("spelling", "name"),
        [
            ("Adam", "adam"),
            ("SGD", "sgd"),
            ("RMSprop", "rmsprop"),
            ("AdamW", "adamw"),
            ("ADAGRAD", "adagrad"),
        ],
    )
    def test_keras_spellings(self, spelling: str, name: str) -> None:
        assert optimizer(spelling)["name"] == name

    def test_object_overrides_only_what_it_names(self) -> None:
        result = optimizer({"name": "sgd", "learning_rate": 0.1, "nesterov": True, "momentum": 0.5})
        assert result == {
            "name": "sgd",
            "learning_rate": 0.1,
            "momentum": 0.5,
            "nesterov": True,
            "weight_decay": 0.0,
            **NO_CLIP,
        }

    def test_keras_serialized_optimizer(self) -> None:
        keras = {
            "module": "keras.optimizers",
            "class_name": "RMSprop",
            "config": {
                "name": "rmsprop",
                "learning_rate": 0.0010000000474974513,
                "weight_decay": None,
                "clipnorm": None,
                "global_clipnorm": None,
                "clipvalue": None,
                "use_ema": False,
                "ema_momentum": 0.99,
                "ema_overwrite_frequency": None,
                "loss_scale_factor": None,
                "gradient_accumulation_steps": None,
                "rho": 0.8,
                "momentum": 0.0,
                "epsilon": 1e-07,
                "centered": True,
            },
            "registered_name": None,
        }
        assert optimizer(keras) == {
            "name": "rmsprop",
            "learning_rate": 0.001,
            "rho": 0.8,
            "momentum": 0.0,
            "epsilon": 1e-7,
            "centered": True,
            "weight_decay": 0.0,
            **NO_CLIP,
        }

    def test_keras_clipping_is_taken(self) -> None:
        for key in NO_CLIP:
            keras = {"class_name": "Adam", "config": {key: 1.0}}
            assert optimizer(keras)[key] == 1.0

    def test_keras_ema_is_refused(self) -> None:
        keras = {"class_name": "Adam", "config": {"use_ema": True}}
        error = refused(spec_dict(compile={"optimizer": keras, "loss": "mse"}))
        assert error.loc == ["body", "compile", "optimizer"]
        assert "use_ema=true is not supported" in error.message


class TestAliases:
    def test_momentum_is_sgd_with_momentum_0_9(self) -> None:
        assert optimizer("momentum") == optimizer({"name": "sgd", "momentum": 0.9})
        assert optimizer({"name": "momentum", "learning_rate": 0.1})["learning_rate"] == 0.1

    def test_gd_is_sgd_on_the_whole_dataset(self) -> None:
        data = spec_dict(compile={"optimizer": "gd", "loss": "mse"}, fit={"epochs": 5})
        data["model"]["layers"][-1] = {"type": "dense", "units": 1}
        dumped = parse_spec(data).model_dump(mode="json")
        assert dumped["compile"]["optimizer"] == optimizer("sgd", loss="mse")
        assert dumped["fit"]["batch_size"] is None and dumped["fit"]["epochs"] == 5

    def test_gd_with_a_batch_size_is_refused(self) -> None:
        error = refused(spec_dict(compile={"optimizer": {"name": "GD"}, "loss": "mse"}))
        assert error.loc == ["body", "fit", "batch_size"]
        assert "'gd'" in error.message

    def test_batch_size_null_is_full_batch(self) -> None:
        fit = parse_spec(spec_dict(fit={"batch_size": None})).fit
        assert fit.batch_size is None

    @pytest.mark.parametrize(
        ("spelling", "canonical"),
        [
            ("mse", "mean_squared_error"),
            ("MeanAbsoluteError", "mean_absolute_error"),
            ("huber_loss", "huber"),
            ("SparseCategoricalCrossentropy", "sparse_categorical_crossentropy"),
        ],
    )
    def test_loss_names(self, spelling: str, canonical: str) -> None:
        units = 1 if canonical in ("mean_squared_error", "mean_absolute_error", "huber") else 10
        data = spec_dict(compile={"loss": spelling})
        data["model"]["layers"][-1] = {"type": "dense", "units": units}
        assert parse_spec(data).compile.loss.name == canonical

    def test_loss_object_forms(self) -> None:
        keras = {
            "class_name": "Huber",
            "config": {"delta": 2.0, "reduction": "sum_over_batch_size", "name": "h"},
        }
        assert compiled(loss=keras)["loss"] == {"name": "huber", "delta": 2.0}
        assert compiled(loss={"name": "categorical_crossentropy", "from_logits": True})["loss"] == {
            "name": "categorical_crossentropy",
            "from_logits": True,
            "label_smoothing": 0.0,
        }

    def test_label_smoothing_is_taken_where_keras_has_it(self) -> None:
        loss = {"class_name": "CategoricalCrossentropy", "config": {"label_smoothing": 0.1}}
        assert compiled(loss=loss)["loss"]["label_smoothing"] == 0.1
        loss = {"class_name": "SparseCategoricalCrossentropy", "config": {"label_smoothing": 0.1}}
        message = refused(spec_dict(compile={"loss": loss})).message
        assert "unknown field 'label_smoothing'" in message

    @pytest.mark.parametrize(
        ("metrics", "loss", "expected"),
        [
            (["acc", "accuracy"], "sparse_categorical_crossentropy", ["accuracy"]),
            (
                ["sparse_categorical_accuracy"],
                "sparse_categorical_crossentropy",
                ["sparse_categorical_accuracy"],
            ),
            (["mean_absolute_error", "MSE"], "mse", ["mae", "mse"]),
            ("accuracy", "categorical_crossentropy", ["accuracy"]),
        ],
    )
    def test_metric_names(self, metrics: Any, loss: str, expected: list[str]) -> None:
        data = spec_dict(compile={"loss": loss, "metrics": metrics}, fit={})
        if loss == "mse":
            data["model"]["layers"][-1] = {"type": "dense", "units": 1}
        assert parse_spec(data).compile.metrics == expected

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("GlorotNormal", {"name": "glorot_normal"}),
            ("he_uniform", {"name": "he_uniform"}),
            (
                {"name": "random_normal", "stddev": 0.1},
                {"name": "random_normal", "mean": 0.0, "stddev": 0.1},
            ),
            ("random_uniform", {"name": "random_uniform", "minval": -0.05, "maxval": 0.05}),
            ("truncated_normal", {"name": "truncated_normal", "mean": 0.0, "stddev": 0.05}),
            (
                {"class_name": "Constant", "config": {"value": 0.5}},
                {"name": "constant", "value": 0.5},
            ),
            ({"class_name": "HeNormal", "config": {"seed": 7}}, {"name": "he_normal"}),
            (
                {
                    "class_name": "VarianceScaling",
                    "config": {"scale": 2.0, "mode": "fan_in", "distribution": "uniform"},
                },
                {"name": "he_uniform"},
            ),
        ],
    )
    def test_initializer_forms(self, value: Any, expected: dict[str, Any]) -> None:
        data = spec_dict()
        data["model"]["layers"][0]["kernel_initializer"] = value
        layer = parse_spec(data).model_dump(mode="json")["model"]["layers"][0]
        assert layer["kernel_initializer"] == expected

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("l1", {"l1": 0.01, "l2": 0.0}),
            ({"l2": 0.001}, {"l1": 0.0, "l2": 0.001}),
            ({"class_name": "L1L2", "config": {"l1": 0.5, "l2": 0.25}}, {"l1": 0.5, "l2": 0.25}),
            ({"class_name": "L2", "config": {"l2": 0.009999999776482582}}, {"l1": 0.0, "l2": 0.01}),
        ],
    )
    def test_regularizer_forms(self, value: Any, expected: dict[str, Any]) -> None:
        data = spec_dict()
        data["model"]["layers"][0]["kernel_regularizer"] = value
        layer = parse_spec(data).model_dump(mode="json")["model"]["layers"][0]
        assert layer["kernel_regularizer"] == expected

    def test_keras_compile_config_instead_of_compile(self) -> None:
        config = {
            "optimizer": {
                "module": "keras.optimizers",
                "class_name": "SGD",
                "config": {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True},
            },
            "loss": "sparse_categorical_crossentropy",
            "loss_weights": None,
            "metrics": ["accuracy"],
            "weighted_metrics": None,
            "run_eagerly": False,
            "steps_per_execution": 1,
            "jit_compile": True,
        }
        dumped = parse_spec(spec_dict(compile=..., compile_config=config)).model_dump(mode="json")
        assert "compile_config" not in dumped
        assert dumped["compile"] == {
            "optimizer": {
                "name": "sgd",
                "learning_rate": 0.05,
                "momentum": 0.9,
                "nesterov": True,
                "weight_decay": 0.0,
                **NO_CLIP,
            },
            "loss": {"name": "sparse_categorical_crossentropy", "from_logits": False},
            "metrics": ["accuracy"],
        }

    def test_early_stopping_keras_spellings(self) -> None:
        fit = {
            "validation_split": 0.2,
            "early_stopping": {"monitor": "val_acc", "min_delta": -0.01},
        }
        early = parse_spec(spec_dict(fit=fit)).fit.early_stopping
        assert early is not None and early.monitor == "val_accuracy" and early.min_delta == 0.01
