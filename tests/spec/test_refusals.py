"""service/spec/: what is refused, and how — a 422 whose ``loc`` names the field and whose
message says what to change (``parse_spec``, and ``JobSpec`` as a FastAPI body)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fitq.service.spec import JobSpec, SpecLimits, parse_spec, validation_errors
from tests.spec.conftest import refused, spec_dict

# (spec overrides, loc under "body", words the message must contain)
BAD_SPECS: list[tuple[str, dict[str, Any], list[str | int], list[str]]] = [
    (
        "unknown layer",
        {"model": {"input_dim": 4, "layers": [{"type": "conv2d", "filters": 3}]}},
        ["model", "layers", 0, "type"],
        ["unknown layer type 'conv2d'", "dense, dropout"],
    ),
    (
        "layer without type",
        {"model": {"input_dim": 4, "layers": [{"units": 3}]}},
        ["model", "layers", 0, "type"],
        ["needs a 'type'"],
    ),
    (
        "unknown activation",
        {
            "model": {
                "input_dim": 4,
                "layers": [{"type": "dense", "units": 3, "activation": "rellu"}],
            }
        },
        ["model", "layers", 0, "activation"],
        ["unknown activation 'rellu'", "relu, sigmoid"],
    ),
    (
        "unknown loss",
        {"compile": {"loss": "cosine_similarity"}},
        ["compile", "loss"],
        ["unknown loss 'cosine_similarity'", "sparse_categorical_crossentropy"],
    ),
    (
        "unknown optimizer",
        {"compile": {"optimizer": "rprop", "loss": "mse"}},
        ["compile", "optimizer"],
        ["unknown optimizer 'rprop'", "adam, adamw"],
    ),
    (
        "unknown initializer",
        {
            "model": {
                "input_dim": 4,
                "layers": [{"type": "dense", "units": 3, "kernel_initializer": "orthogonal"}],
            }
        },
        ["model", "layers", 0, "kernel_initializer"],
        ["unknown initializer 'orthogonal'"],
    ),
    (
        "unknown metric",
        {"compile": {"loss": "sparse_categorical_crossentropy", "metrics": ["f1_score"]}},
        ["compile", "metrics", 0],
        ["unknown metric 'f1_score'"],
    ),
    (
        "units 0",
        {"model": {"input_dim": 4, "layers": [{"type": "dense", "units": 0}]}},
        ["model", "layers", 0, "units"],
        ["must be ≥ 1 (got 0)"],
    ),
    (
        "units negative",
        {"model": {"input_dim": 4, "layers": [{"type": "dense", "units": -3}]}},
        ["model", "layers", 0, "units"],
        ["must be ≥ 1 (got -3)"],
    ),
    (
        "units not an integer",
        {"model": {"input_dim": 4, "layers": [{"type": "dense", "units": 2.5}]}},
        ["model", "layers", 0, "units"],
        ["must be an integer"],
    ),
    (
        "input_dim 0",
        {"model": {"input_dim": 0, "layers": [{"type": "dense", "units": 2}]}},
        ["model", "input_dim"],
        ["must be ≥ 1"],
    ),
    (
        "no layers",
        {"model": {"input_dim": 4, "layers": []}},
        ["model", "layers"],
        ["at least 1 item"],
    ),
    (
        "no dense layer",
        {"model": {"input_dim": 4, "layers": [{"type": "dropout", "rate": 0.1}]}},
        ["model", "layers"],
        ["at least one dense layer"],
    ),
    ("epochs 0", {"fit": {"epochs": 0}}, ["fit", "epochs"], ["must be ≥ 1 (got 0)"]),
    ("epochs over the limit", {"fit": {"epochs": 10_001}}, ["fit", "epochs"], ["≤ 10000"]),
    ("batch_size 0", {"fit": {"batch_size": 0}}, ["fit", "batch_size"], ["must be ≥ 1 (got 0)"]),
    ("batch_size negative", {"fit": {"batch_size": -32}}, ["fit", "batch_size"], ["must be ≥ 1"]),
    (
        "validation_split 1",
        {"fit": {"validation_split": 1.0}},
        ["fit", "validation_split"],
        ["must be < 1"],
    ),
    (
        "learning_rate 0",
        {"compile": {"optimizer": {"name": "adam", "learning_rate": 0}, "loss": "mse"}},
        ["compile", "optimizer", "learning_rate"],
        ["must be > 0 (got 0)"],
    ),
    (
        "learning_rate negative",
        {"compile": {"optimizer": {"name": "sgd", "learning_rate": -0.1}, "loss": "mse"}},
        ["compile", "optimizer", "learning_rate"],
        ["must be > 0 (got -0.1)"],
    ),
    (
        "epsilon 0",
        {"compile": {"optimizer": {"name": "adam", "epsilon": 0.0}, "loss": "mse"}},
        ["compile", "optimizer", "epsilon"],
        ["must be > 0"],
    ),
    (
        "beta_1 1",
        {"compile": {"optimizer": {"name": "adam", "beta_1": 1.0}, "loss": "mse"}},
        ["compile", "optimizer", "beta_1"],
        ["must be < 1"],
    ),
    (
        "momentum negative",
        {"compile": {"optimizer": {"name": "sgd", "momentum": -0.5}, "loss": "mse"}},
        ["compile", "optimizer", "momentum"],
        ["must be ≥ 0"],
    ),
    (
        "sgd momentum 1 (the velocity would never decay)",
        {"compile": {"optimizer": {"name": "sgd", "momentum": 1.0}, "loss": "mse"}},
        ["compile", "optimizer", "momentum"],
        ["must be < 1 (got 1.0)"],
    ),
    (
        "rmsprop momentum 1",
        {"compile": {"optimizer": {"name": "rmsprop", "momentum": 1.0}, "loss": "mse"}},
        ["compile", "optimizer", "momentum"],
        ["must be < 1 (got 1.0)"],
    ),
    (
        "learning_rate beyond float32 (the engine computes in float32)",
        {"compile": {"optimizer": {"name": "adam", "learning_rate": 1e39}, "loss": "mse"}},
        ["compile", "optimizer", "learning_rate"],
        ["must be ≤ 3.4028235e+38 (the largest float32", "(got 1e+39)"],
    ),
    (
        "constant initializer beyond float32",
        {
            "model": {
                "input_dim": 4,
                "layers": [
                    {
                        "type": "dense",
                        "units": 2,
                        "bias_initializer": {"name": "constant", "value": -1e300},
                    }
                ],
            }
        },
        ["model", "layers", 0, "bias_initializer", "value"],
        ["must be ≥ -3.4028235e+38"],
    ),
    (
        "uniform initializer wider than float32",
        {
            "model": {
                "input_dim": 4,
                "layers": [
                    {
                        "type": "dense",
                        "units": 2,
                        "kernel_initializer": {
                            "name": "random_uniform",
                            "minval": -3e38,
                            "maxval": 3e38,
                        },
                    }
                ],
            }
        },
        ["model", "layers", 0, "kernel_initializer", "maxval"],
        ["maxval − minval must be ≤ 3.4028235e+38"],
    ),
    (
        "nesterov without momentum",
        {"compile": {"optimizer": {"name": "sgd", "nesterov": True}, "loss": "mse"}},
        ["compile", "optimizer", "nesterov"],
        ["nesterov needs momentum > 0"],
    ),
    (
        "optimizer key from torch",
        {"compile": {"optimizer": {"name": "adam", "lr": 0.1}, "loss": "mse"}},
        ["compile", "optimizer", "lr"],
        ["unknown field 'lr'", "learning_rate"],
    ),
    (
        "dropout rate 1",
        {
            "model": {
                "input_dim": 4,
                "layers": [{"type": "dropout", "rate": 1.0}, {"type": "dense", "units": 2}],
            }
        },
        ["model", "layers", 0, "rate"],
        ["must be < 1 (got 1.0)"],
    ),
    (
        "dropout rate negative",
        {
            "model": {
                "input_dim": 4,
                "layers": [{"type": "dropout", "rate": -0.1}, {"type": "dense", "units": 2}],
            }
        },
        ["model", "layers", 0, "rate"],
        ["must be ≥ 0"],
    ),
    (
        "unknown key on a layer",
        {"model": {"input_dim": 4, "layers": [{"type": "dense", "units": 2, "activaton": "relu"}]}},
        ["model", "layers", 0, "activaton"],
        ["unknown field 'activaton'", "activation"],
    ),
    ("unknown top-level key", {"epochs": 3}, ["epochs"], ["unknown field 'epochs'", "fit"]),
    (
        "NaN",
        {"compile": {"optimizer": {"name": "adam", "learning_rate": float("nan")}, "loss": "mse"}},
        ["compile", "optimizer", "learning_rate"],
        ["finite number"],
    ),
    ("string for a bool", {"fit": {"shuffle": "yes"}}, ["fit", "shuffle"], ["true or false"]),
    ("no loss", {"compile": {"optimizer": "adam"}}, ["compile", "loss"], ["is required"]),
    ("no compile", {"compile": ...}, ["compile"], ["compile is required"]),
    ("no model", {"model": ...}, ["model"], ["a model is required"]),
    ("no dataset", {"dataset_id": ...}, ["dataset_id"], ["is required"]),
    ("model and keras_json", {"keras_json": "{}"}, ["keras_json"], ["not both"]),
    (
        "accuracy with regression loss",
        {"compile": {"loss": "huber", "metrics": ["accuracy"]}},
        ["compile", "metrics", 0],
        ["accuracy needs a classification loss"],
    ),
    (
        "mae with sparse labels",
        {"compile": {"loss": "sparse_categorical_crossentropy", "metrics": ["mae"]}},
        ["compile", "metrics", 0],
        ["class indices"],
    ),
    (
        "binary CE with 10 units",
        {"compile": {"loss": "binary_crossentropy"}},
        ["model", "layers", 3, "units"],
        ["binary_crossentropy takes 1 output unit", "has 10"],
    ),
    (
        "sparse CE with 1 unit",
        {"model": {"input_dim": 4, "layers": [{"type": "dense", "units": 1}]}},
        ["model", "layers", 0, "units"],
        ["at least 2"],
    ),
    (
        "softmax over 1 unit",
        {
            "model": {
                "input_dim": 4,
                "layers": [
                    {"type": "dense", "units": 1},
                    {"type": "activation", "activation": "softmax"},
                ],
            },
            "compile": {"loss": "mse"},
        },
        ["model", "layers", 1, "activation"],
        ["softmax over 1 unit"],
    ),
    (
        "monitor without validation",
        {"fit": {"early_stopping": {}}},
        ["fit", "early_stopping", "monitor"],
        ["needs validation data"],
    ),
    (
        "monitor of an unlogged metric",
        {"fit": {"validation_split": 0.1, "early_stopping": {"monitor": "val_mae"}}},
        ["fit", "early_stopping", "monitor"],
        ["val_accuracy"],
    ),
    ("validation twice", {"validation_dataset_id": "v"}, ["fit", "validation_split"], ["not both"]),
    ("priority out of range", {"priority": 1000}, ["priority"], ["must be ≤ 100"]),
    ("max_attempts 0", {"max_attempts": 0}, ["max_attempts"], ["must be ≥ 1"]),
    ("seed negative", {"seed": -1}, ["seed"], ["must be ≥ 0"]),
    ("name too long", {"name": "x" * 201}, ["name"], ["at most 200 characters"]),
]


class TestBadSpecs:
    @pytest.mark.parametrize(
        ("overrides", "loc", "words"),
        [case[1:] for case in BAD_SPECS],
        ids=[case[0] for case in BAD_SPECS],
    )
    def test_refused_naming_the_field(
        self, overrides: dict[str, Any], loc: list[str | int], words: list[str]
    ) -> None:
        error = refused(spec_dict(**overrides))
        assert error.status_code == 422
        assert error.loc == ["body", *loc]
        assert error.message.startswith(".".join(str(p) for p in loc) + ": ")
        for word in words:
            assert word in error.message

    @pytest.mark.parametrize(
        ("body", "words"),
        [
            ("{not json", "not valid JSON"),
            (b"", "not valid JSON"),
            (b"\xff\xfe\x00", "not"),
            ("[1, 2]", "must be a JSON object"),
            ("null", "must be a JSON object"),
            (42, "must be a JSON object"),
        ],
    )
    def test_malformed_body(self, body: Any, words: str) -> None:
        error = refused(body)
        assert error.loc == ["body"] and words in error.message

    def test_several_problems_in_one_message(self) -> None:
        error = refused(spec_dict(fit={"epochs": 0, "batch_size": 0}))
        assert error.loc == ["body", "fit", "epochs"]
        assert "and 1 more: fit.batch_size: must be ≥ 1" in error.message

    def test_limits_are_settable(self) -> None:
        with pytest.raises(Exception, match="≤ 5"):
            parse_spec(spec_dict(fit={"epochs": 6}), limits=SpecLimits(max_epochs=5))
        error = refused(
            spec_dict(model={"input_dim": 10**6, "layers": [{"type": "dense", "units": 10**4}]})
        )
        assert error.loc == ["body", "model", "layers"] and "parameters" in error.message


class TestAsFastAPIBody:
    """``JobSpec.model_validate`` is what FastAPI runs on a ``body: JobSpec`` parameter."""

    def test_errors_have_field_locs_without_union_tags(self) -> None:
        data = spec_dict()
        data["model"]["layers"][2]["units"] = 0
        with pytest.raises(ValidationError) as info:
            JobSpec.model_validate(data)
        assert info.value.errors()[0]["loc"] == ("model", "layers", 2, "units")
        assert validation_errors(info.value) == [
            {
                "loc": ["body", "model", "layers", 2, "units"],
                "msg": "must be ≥ 1 (got 0)",
                "type": "greater_than_equal",
            }
        ]

    def test_custom_messages_are_plain_msgs(self) -> None:
        with pytest.raises(ValidationError) as info:
            JobSpec.model_validate(spec_dict(compile={"loss": "cosine_similarity"}))
        (error,) = info.value.errors()
        assert error["loc"] == ("compile", "loss") and error["msg"].startswith("unknown loss")

    def test_json_schema_lists_the_alternatives(self) -> None:
        schema = JobSpec.model_json_schema()
        assert {"model", "keras_json", "compile", "compile_config"} <= set(schema["properties"])
        assert schema["required"] == ["dataset_id"]
