"""Factories for specs and Keras exports."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from fitq.service.errors import InvalidSpec
from fitq.service.spec import parse_spec

KERAS_EXAMPLES = Path(__file__).parents[2] / "examples" / "keras"
"""Real Keras exports (Keras 3 and tf.keras 2), copied from the product's shared examples."""

# SPEC §2's example, as a user sends it.
SPEC_EXAMPLE: dict[str, Any] = {
    "model": {
        "input_dim": 784,
        "layers": [
            {"type": "dense", "units": 128, "activation": "relu"},
            {"type": "dropout", "rate": 0.2},
            {"type": "dense", "units": 64, "activation": "relu"},
            {"type": "dense", "units": 10, "activation": "softmax"},
        ],
    },
    "compile": {
        "optimizer": {"name": "adam", "learning_rate": 0.001},
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy"],
    },
    "fit": {
        "epochs": 10,
        "batch_size": 32,
        "validation_split": 0.1,
        "shuffle": True,
        "early_stopping": {"monitor": "val_loss", "patience": 3},
    },
    "seed": 0,
    "dataset_id": "ds_train",
    "validation_dataset_id": None,
    "test_dataset_id": "ds_test",
    "priority": 0,
    "name": "mnist-mlp",
}


def spec_dict(**overrides: Any) -> dict[str, Any]:
    """SPEC §2's example with top-level keys replaced (a value of ``...`` removes the key)."""
    spec = copy.deepcopy(SPEC_EXAMPLE)
    for key, value in overrides.items():
        if value is ...:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


def refused(data: Any) -> InvalidSpec:
    """The InvalidSpec ``parse_spec`` raises for ``data`` (fails the test if it accepts)."""
    with pytest.raises(InvalidSpec) as info:
        parse_spec(data)
    return info.value


def keras_layer(class_name: str, **config: Any) -> dict[str, Any]:
    return {
        "module": "keras.layers",
        "class_name": class_name,
        "config": {"name": class_name.lower(), "trainable": True, "dtype": "float32", **config},
        "registered_name": None,
    }


def keras_model(*layers: dict[str, Any], input_dim: int = 4, class_name: str = "Sequential") -> str:
    """A Keras 3 style ``model.to_json()`` with an InputLayer of ``input_dim`` features."""
    first = {
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {"batch_shape": [None, input_dim], "dtype": "float32", "name": "input_layer"},
        "registered_name": None,
    }
    return json.dumps(
        {
            "module": "keras",
            "class_name": class_name,
            "config": {"name": "m", "trainable": True, "layers": [first, *layers]},
            "registered_name": None,
        }
    )


def dense(units: int, activation: str = "linear", **config: Any) -> dict[str, Any]:
    return keras_layer("Dense", units=units, activation=activation, use_bias=True, **config)


def keras_spec(*layers: dict[str, Any], input_dim: int = 4, **overrides: Any) -> dict[str, Any]:
    return spec_dict(
        model=...,
        keras_json=keras_model(*layers, input_dim=input_dim),
        fit={"epochs": 1},
        **overrides,
    )
