"""service/spec/keras_layers.py: Keras' layers with their parameters, in tf.keras 2's
spellings (Keras 3's real exports are in tests/keras_models), and what a
multi-dimensional input refuses before its flatten."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fitq.service.spec import keras, parse_spec
from tests.spec.conftest import refused


def _tf_keras2(*layers: dict[str, Any], shape: list[Any] | None = None) -> dict[str, Any]:
    """A tf.keras 2 style export: no module/registered_name, dtype strings, the first layer
    with batch_input_shape, keras_version 2.x."""
    first = {
        "class_name": "InputLayer",
        "config": {"batch_input_shape": shape or [None, 4], "dtype": "float32",
                   "sparse": False, "ragged": False, "name": "input_1"},
    }  # fmt: skip
    return {
        "class_name": "Sequential",
        "config": {"name": "sequential", "layers": [first, *layers]},
        "keras_version": "2.15.0",
        "backend": "tensorflow",
    }


def _tf_layer(class_name: str, **config: Any) -> dict[str, Any]:
    return {"class_name": class_name, "config": {"name": class_name.lower(), "trainable": True,
                                                 "dtype": "float32", **config}}  # fmt: skip


class TestKerasLayersWithParameters:
    """Keras 3's exports of these are in tests/keras_models; here tf.keras 2's spellings."""

    @pytest.mark.parametrize(
        ("layer", "expected"),
        [
            (_tf_layer("LeakyReLU", alpha=0.1), {"type": "leaky_relu", "negative_slope": 0.1}),
            (_tf_layer("LeakyReLU"), {"type": "leaky_relu", "negative_slope": 0.3}),
            (_tf_layer("ELU", alpha=0.5), {"type": "elu", "alpha": 0.5}),
            (
                _tf_layer("ReLU", max_value=6.0, negative_slope=0.0, threshold=0.0),
                {"type": "relu", "max_value": 6.0, "negative_slope": 0.0, "threshold": 0.0},
            ),
            (
                _tf_layer("ThresholdedReLU", theta=0.5),
                {"type": "relu", "max_value": None, "negative_slope": 0.0, "threshold": 0.5},
            ),
            (
                _tf_layer("PReLU", alpha_initializer={"class_name": "Zeros", "config": {}},
                          alpha_regularizer=None, alpha_constraint=None, shared_axes=None),
                {"type": "prelu", "alpha_initializer": {"name": "zeros"}},
            ),
            (
                _tf_layer("GaussianNoise", stddev=0.2, seed=None),
                {"type": "gaussian_noise", "stddev": 0.2},
            ),
            (_tf_layer("GaussianDropout", rate=0.1), {"type": "gaussian_dropout", "rate": 0.1}),
            (
                _tf_layer("AlphaDropout", rate=0.1, noise_shape=None, seed=3),
                {"type": "alpha_dropout", "rate": 0.1},
            ),
            (
                _tf_layer("ActivityRegularization", l1=0.0, l2=0.01),
                {"type": "activity_regularization", "l1": 0.0, "l2": 0.01},
            ),
            (
                _tf_layer("Rescaling", scale=0.00392156862745098, offset=0.0),
                {"type": "rescaling", "scale": 0.00392156862745098, "offset": 0.0},
            ),
            (
                _tf_layer("Normalization", axis=[-1], mean=[0.0, 1.0, 2.0, 3.0],
                          variance=[1.0, 1.0, 4.0, 4.0], invert=False),
                {"type": "normalization", "mean": [0.0, 1.0, 2.0, 3.0],
                 "variance": [1.0, 1.0, 4.0, 4.0], "invert": False},
            ),
        ],
    )  # fmt: skip
    def test_tf_keras_2(self, layer: dict[str, Any], expected: dict[str, Any]) -> None:
        body = {
            "keras_json": json.dumps(_tf_keras2(layer, _tf_layer("Dense", units=2))),
            "compile": {"loss": "mse"},
            "dataset_id": "d",
        }
        assert parse_spec(body).model_dump(mode="json")["model"]["layers"][0] == expected

    def test_tf_keras_2_constraints(self) -> None:
        dense_ = _tf_layer(
            "Dense", units=2, activation="linear", use_bias=True,
            kernel_constraint={"class_name": "MaxNorm", "config": {"max_value": 2, "axis": 0}},
            bias_constraint={"class_name": "NonNeg", "config": {}},
        )  # fmt: skip
        body = {"keras_json": _tf_keras2(dense_), "compile": {"loss": "mse"}, "dataset_id": "d"}
        layer = parse_spec(body).model_dump(mode="json")["model"]["layers"][0]
        assert layer["kernel_constraint"] == {"name": "max_norm", "max_value": 2.0, "axis": 0}
        assert layer["bias_constraint"] == {"name": "non_neg"}

    def test_an_image_input_flattened(self) -> None:
        doc = _tf_keras2(
            _tf_layer("Rescaling", scale=0.5, offset=0.0),
            _tf_layer("Flatten", data_format="channels_last"),
            _tf_layer("Dense", units=2),
            shape=[None, 28, 28],
        )
        model = keras.model_from_keras(doc)
        assert (model["input_dim"], model["input_shape"]) == (784, [28, 28])
        assert [layer["type"] for layer in model["layers"]] == ["rescaling", "flatten", "dense"]

    @pytest.mark.parametrize(
        ("layers", "words"),
        [
            ([_tf_layer("Dense", units=2)], "a dense layer on the 2-dimensional input (28, 28)"),
            (
                [_tf_layer("Softmax", axis=-1), _tf_layer("Flatten"), _tf_layer("Dense", units=2)],
                "an activation layer on the 2-dimensional input",
            ),
            (
                [_tf_layer("Flatten", data_format="channels_first"), _tf_layer("Dense", units=2)],
                'data_format="channels_first" is not supported',
            ),
            (
                [_tf_layer("Reshape", target_shape=[28, 28]), _tf_layer("Dense", units=2)],
                "only a Reshape to one axis",
            ),
        ],
    )
    def test_what_a_multi_dimensional_input_refuses(
        self, layers: list[dict[str, Any]], words: str
    ) -> None:
        body = {
            "keras_json": _tf_keras2(*layers, shape=[None, 28, 28]),
            "compile": {"loss": "mse"},
            "dataset_id": "d",
        }
        error = refused(body)
        assert words in error.message, error.message
        assert error.loc[:3] == ["body", "keras_json", "layers"]
