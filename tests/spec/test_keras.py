"""service/spec/keras.py: Keras model.to_json() exports as specs."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import pytest

from fitq.service.errors import InvalidSpec
from fitq.service.spec import keras, parse_spec
from tests.spec.conftest import (
    KERAS_EXAMPLES,
    dense,
    keras_layer,
    keras_model,
    keras_spec,
    refused,
    spec_dict,
)

DENSE_DEFAULTS = {
    "use_bias": True,
    "kernel_initializer": {"name": "glorot_uniform"},
    "bias_initializer": {"name": "zeros"},
    "kernel_regularizer": None,
    "kernel_constraint": None,
    "bias_constraint": None,
}
REFERENCE_LAYERS = [
    {"type": "dense", "units": 128, "activation": "relu", **DENSE_DEFAULTS},
    {"type": "dense", "units": 64, "activation": "relu", **DENSE_DEFAULTS},
    {"type": "dense", "units": 10, "activation": "softmax", **DENSE_DEFAULTS},
]


def example(name: str) -> str:
    return (KERAS_EXAMPLES / name).read_text()


def model_of(*layers: dict[str, Any], input_dim: int = 4) -> dict[str, Any]:
    return keras.model_from_keras(keras_model(*layers, input_dim=input_dim))


class TestExamples:
    def test_keras3_export_with_its_compile_config(self) -> None:
        body = {"keras_json": example("digits_keras3.json"), "dataset_id": "digits"}
        dumped = parse_spec(body).model_dump(mode="json")
        assert dumped["model"] == {"input_dim": 64, "input_shape": [64], "layers": REFERENCE_LAYERS}
        # Its compile_config: Adam with Keras' float32 learning rate read back as 0.001.
        assert dumped["compile"] == {
            "optimizer": {
                "name": "adam",
                "learning_rate": 0.001,
                "beta_1": 0.9,
                "beta_2": 0.999,
                "epsilon": 1e-07,
                "amsgrad": False,
                "weight_decay": 0.0,
                "clipnorm": None,
                "clipvalue": None,
                "global_clipnorm": None,
            },
            "loss": {"name": "sparse_categorical_crossentropy", "from_logits": False},
            "metrics": ["accuracy"],
        }
        assert "keras_json" not in dumped and "compile_config" not in dumped

    def test_tf_keras2_export(self) -> None:
        body = {
            "keras_json": example("seed_mlp_tf_keras2.json"),
            "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy"},
            "fit": {"epochs": 10},
            "dataset_id": "mnist",
        }
        spec = parse_spec(body)
        assert spec.model.model_dump(mode="json") == {
            "input_dim": 784,
            "input_shape": [784],
            "layers": REFERENCE_LAYERS,
        }
        assert spec.field_loc("model") == "keras_json"

    def test_parsed_object_is_accepted_too(self) -> None:
        doc = json.loads(example("digits_keras3.json"))
        spec = parse_spec({"keras_json": doc, "dataset_id": "digits"})
        assert spec.model.input_dim == 64

    def test_explicit_compile_wins_over_the_embedded_one(self) -> None:
        body = {
            "keras_json": example("digits_keras3.json"),
            "dataset_id": "d",
            "compile": {"optimizer": "sgd", "loss": "sparse_categorical_crossentropy"},
        }
        assert parse_spec(body).compile.optimizer.name == "sgd"

    def test_without_compile_anywhere_is_refused(self) -> None:
        error = refused({"keras_json": example("seed_mlp_tf_keras2.json"), "dataset_id": "d"})
        assert error.loc == ["body", "compile"] and "loss" in error.message


class TestLayers:
    def test_one_fitq_layer_per_keras_layer_in_order(self) -> None:
        """Keras' model.layers[i] (InputLayer excluded) is fitq's layers.{i}."""
        model = model_of(
            keras_layer(
                "BatchNormalization",
                axis=-1,
                momentum=0.9,
                epsilon=0.001,
                center=True,
                scale=False,
                beta_initializer={"class_name": "Zeros", "config": {}},
                gamma_initializer="ones",
            ),
            dense(
                16,
                "relu",
                kernel_initializer={
                    "class_name": "RandomNormal",
                    "config": {"mean": 0.0, "stddev": 0.02, "seed": 3},
                },
                kernel_regularizer={"class_name": "L2", "config": {"l2": 0.001}},
            ),
            keras_layer("Dropout", rate=0.5, noise_shape=None, seed=42),
            keras_layer("Flatten", data_format="channels_last"),
            keras_layer(
                "LayerNormalization",
                axis=[1],
                epsilon=1e-5,
                center=True,
                scale=True,
                rms_scaling=False,
            ),
            keras_layer("ReLU", max_value=None, negative_slope=0.0, threshold=0.0),
            dense(3),
            keras_layer("Activation", activation="softmax"),
        )
        assert model["input_dim"] == 4
        assert [layer["type"] for layer in model["layers"]] == [
            "batch_normalization",
            "dense",
            "dropout",
            "flatten",
            "layer_normalization",
            "relu",
            "dense",
            "activation",
        ]
        assert model["layers"][0] == {
            "type": "batch_normalization",
            "momentum": 0.9,
            "epsilon": 0.001,
            "center": True,
            "scale": False,
        }
        assert model["layers"][2] == {"type": "dropout", "rate": 0.5}
        assert model["layers"][3] == {"type": "flatten"}
        assert model["layers"][5] == {
            "type": "relu",
            "max_value": None,
            "negative_slope": 0.0,
            "threshold": 0.0,
        }

        dumped = parse_spec(
            keras_spec(*_keras_layers_again(), compile={"loss": "sparse_categorical_crossentropy"})
        ).model_dump(mode="json")["model"]["layers"][1]
        # Keras objects are normalized by the spec; the initializer's seed is dropped.
        assert dumped["kernel_initializer"] == {
            "name": "random_normal",
            "mean": 0.0,
            "stddev": 0.02,
        }
        assert dumped["kernel_regularizer"] == {"l1": 0.0, "l2": 0.001}

    def test_input_dim_from_first_layer_without_input_layer(self) -> None:
        doc = {
            "class_name": "Sequential",
            "config": {
                "layers": [
                    {"class_name": "Dense", "config": {"units": 2, "batch_input_shape": [None, 7]}},
                ]
            },
        }
        assert keras.model_from_keras(doc)["input_dim"] == 7
        doc["config"]["layers"][0]["config"] = {"units": 2, "input_shape": [5]}  # type: ignore[index]
        assert keras.model_from_keras(doc)["input_dim"] == 5

    @pytest.mark.parametrize(
        ("layer", "words"),
        [
            (keras_layer("Lambda", function="x"), "layer 1 (Lambda 'lambda') is not supported"),
            (keras_layer("Conv2D", filters=3), "layer 1 (Conv2D 'conv2d') is not supported"),
            (keras_layer("MyDense", units=3), "layer 1 (MyDense 'mydense') is not supported"),
            (keras_layer("PReLU", shared_axes=[1]), "shared_axes=[1] is not supported"),
            (keras_layer("Reshape", target_shape=[3, 1]), "only a Reshape to one axis"),
            (keras_layer("Normalization", axis=-1), "gets its statistics from adapt()"),
            (keras_layer("Rescaling", scale=[1.0, 2.0, 3.0]), "not one per channel"),
            (keras_layer("Softmax", axis=0), "axis=0 is not supported"),
            (keras_layer("BatchNormalization", axis=0), "axis=0 is not supported"),
            (keras_layer("Dropout", rate=0.5, noise_shape=[1, 4]), "noise_shape"),
            (dense(3, activity_regularizer={"class_name": "L1"}), "activity_regularizer"),
            (dense(3, bias_regularizer={"class_name": "L2"}), "bias_regularizer"),
            (dense(3, trainable=False), "frozen layer"),
        ],
    )
    def test_unsupported_layers_refused_by_name_and_index(
        self, layer: dict[str, Any], words: str
    ) -> None:
        error = refused(keras_spec(dense(3, "relu"), layer, dense(10, "softmax")))
        assert error.loc == ["body", "keras_json", "layers", 1]
        assert words in error.message
        if "is not supported;" in words:
            assert "fitq supports: Dense, Dropout, Activation" in error.message

    def test_field_errors_inside_a_keras_layer_name_its_index(self) -> None:
        error = refused(keras_spec(dense(3, "rellu"), dense(10, "softmax")))
        assert error.loc == ["body", "keras_json", "layers", 0, "activation"]
        assert "unknown activation 'rellu'" in error.message
        error = refused(keras_spec(dense(0), dense(10, "softmax")))
        assert error.loc == ["body", "keras_json", "layers", 0, "units"]

    def test_tf_keras2_hard_sigmoid_is_refused(self) -> None:
        doc = json.loads(keras_model(dense(1, "hard_sigmoid")))
        doc["keras_version"] = "2.15.0"
        with pytest.raises(InvalidSpec, match="hard_sigmoid"):
            keras.model_from_keras(doc)
        assert model_of(dense(1, "hard_sigmoid"))["layers"][0]["activation"] == "hard_sigmoid"


class TestModels:
    def test_functional_model_refused(self) -> None:
        error = refused(
            spec_dict(model=..., keras_json=keras_model(dense(10), class_name="Functional"))
        )
        assert error.loc == ["body", "keras_json"]
        assert "only Sequential models" in error.message and "Functional" in error.message

    @pytest.mark.parametrize(
        ("keras_json", "words"),
        [
            ("{not json", "keras_json is not valid JSON"),
            ("[1, 2]", "must be a JSON object"),
            ("{}", "got no class_name"),
            ('{"class_name": "Sequential", "config": {}}', "no list of layers"),
            (keras_model(input_dim=3), "no layers after its InputLayer"),
        ],
    )
    def test_malformed_exports_refused(self, keras_json: str, words: str) -> None:
        error = refused(spec_dict(model=..., keras_json=keras_json))
        assert error.loc == ["body", "keras_json"] and words in error.message

    def test_multi_dimensional_input_is_the_models_input_shape(self) -> None:
        doc = json.loads(keras_model(keras_layer("Flatten"), dense(10)))
        doc["config"]["layers"][0]["config"]["batch_shape"] = [None, 28, 28]
        model = keras.model_from_keras(doc)
        assert (model["input_dim"], model["input_shape"]) == (784, [28, 28])
        assert model["layers"][0] == {"type": "flatten"}

    def test_unknown_sizes_in_the_input_shape_refused(self) -> None:
        doc = json.loads(keras_model(keras_layer("Flatten"), dense(10)))
        doc["config"]["layers"][0]["config"]["batch_shape"] = [None, None, 28]
        with pytest.raises(InvalidSpec, match=r"\(None, None, 28\) is not a shape of known"):
            keras.model_from_keras(doc)

    def test_no_input_shape_refused(self) -> None:
        doc = {"class_name": "Sequential", "config": {"layers": [dense(3)]}}
        with pytest.raises(InvalidSpec, match="no input shape"):
            keras.model_from_keras(doc)

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (0.0010000000474974513, 0.001),
            (0.009999999776482582, 0.01),
            (0.9, 0.9),
            (1e-07, 1e-07),
            (0.1, 0.1),
            (3, 3),
        ],
    )
    def test_float32_artefacts_are_shortened(self, value: float, expected: float) -> None:
        assert keras.f32_shortest(value) == expected


def _keras_layers_again() -> list[dict[str, Any]]:
    return [
        keras_layer("BatchNormalization", axis=-1),
        dense(
            16,
            "relu",
            kernel_initializer={
                "class_name": "RandomNormal",
                "config": {"mean": 0.0, "stddev": 0.02, "seed": 3},
            },
            kernel_regularizer={"class_name": "L2", "config": {"l2": 0.001}},
        ),
        dense(10, "softmax"),
    ]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a JSON document (containers and leaves)."""
    found = [prefix] if prefix else []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else []
    )
    for key, child in items:
        found += _paths(child, (*prefix, key))
    return found


def _replaced(doc: Any, path: tuple[Any, ...], new: Any) -> Any:
    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return doc


class TestNeverCrashes:
    """Any value anywhere in a spec or a Keras export: accepted or InvalidSpec, never a 500."""

    ODD_VALUES = [None, 0, -1, 1.5, "x", True, [], {}, [None, 3, 3], {"class_name": 1}]

    @pytest.mark.parametrize("name", ["digits_keras3.json", "seed_mlp_tf_keras2.json"])
    def test_every_value_of_a_keras_export(self, name: str) -> None:
        doc = json.loads(example(name))
        for path in _paths(doc):
            for odd in self.ODD_VALUES:
                body = {
                    "keras_json": json.dumps(_replaced(doc, path, odd)),
                    "dataset_id": "d",
                    "compile": {"loss": "sparse_categorical_crossentropy"},
                }
                with contextlib.suppress(InvalidSpec):
                    parse_spec(body)

    def test_every_value_of_a_spec(self) -> None:
        doc = spec_dict(fit={"early_stopping": {"monitor": "loss"}})
        doc["model"]["layers"][0] |= {
            "kernel_initializer": {"class_name": "VarianceScaling", "config": {"scale": 1.0}},
            "kernel_regularizer": {"class_name": "L2", "config": {}},
        }
        doc["compile"]["metrics"] = [{"class_name": "BinaryAccuracy", "config": {}}]
        for path in _paths(doc):
            for odd in self.ODD_VALUES:
                with contextlib.suppress(InvalidSpec):
                    parse_spec(_replaced(doc, path, odd))
