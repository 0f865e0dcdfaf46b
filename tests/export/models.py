"""Trained fitq models for the exporter tests: specs normalized by the service, trained by
the engine on tiny random data, exported as the worker exports them."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import safetensors.numpy

from fitq.service.spec import ACTIVATIONS, parse_spec
from fitq.worker.engine import Trainer, load_predictor

TOLERANCE = 1e-5  # the exports' promise: fitq's outputs within this, absolutely
INPUT_DIM = 4


@dataclass(frozen=True)
class Case:
    layers: tuple[dict[str, Any], ...]
    loss: str = "mse"
    normalize: bool = False
    feature_scale: tuple[float, ...] = (3.0,) * INPUT_DIM  # each feature's spread
    feature_shift: tuple[float, ...] = (0.0,) * INPUT_DIM
    input_shape: tuple[int, ...] = (INPUT_DIM,)  # the rows' shape before they are flat


def dense(units: int, activation: str = "linear", **kw: Any) -> dict[str, Any]:
    return {"type": "dense", "units": units, "activation": activation, **kw}


def _activation_case(name: str) -> Case:
    # the activation in a dense layer and as a layer of its own; inputs spread wide
    # enough that hard_sigmoid clips and softplus/elu/selu see both sides
    return Case((dense(6, name), {"type": "activation", "activation": name}, dense(2)))


CASES: dict[str, Case] = {
    **{f"activation_{name}": _activation_case(name) for name in ACTIVATIONS},
    "dense_without_bias": Case((dense(5, "relu", use_bias=False), dense(2, use_bias=False))),
    "regularized": Case((dense(5, "tanh", kernel_regularizer={"l1": 0.01, "l2": 0.02}), dense(1))),
    "dropout": Case((dense(8, "relu"), {"type": "dropout", "rate": 0.5}, dense(2))),
    "batch_normalization": Case(
        (dense(6, "tanh"), {"type": "batch_normalization", "momentum": 0.5}, dense(2))
    ),
    "batch_normalization_bare": Case(
        (
            {
                "type": "batch_normalization",
                "momentum": 0.3,
                "epsilon": 0.01,
                "center": False,
                "scale": False,
            },
            dense(2),
        )
    ),
    "layer_normalization": Case((dense(6, "relu"), {"type": "layer_normalization"}, dense(2))),
    "layer_normalization_scale_only": Case(
        (dense(6), {"type": "layer_normalization", "center": False, "epsilon": 0.1}, dense(2))
    ),
    "layer_normalization_bare": Case(
        (dense(6), {"type": "layer_normalization", "center": False, "scale": False}, dense(2))
    ),
    "normalize": Case(
        (dense(6, "relu"), dense(2)),
        normalize=True,
        feature_scale=(1.0, 40.0, 0.01, 5.0),
        feature_shift=(0.0, 100.0, -3.0, 0.5),
    ),
    "normalize_tiny_std": Case(  # under Keras' epsilon: a Rescaling goes first
        (dense(6, "relu"), dense(2)),
        normalize=True,
        feature_scale=(1.0, 1e-9, 1.0, 1e-8),
        feature_shift=(0.0, 1e-3, 0.0, 0.0),
    ),
    "normalize_constant_feature": Case(  # std 0 becomes 1
        (dense(6, "relu"), dense(2)), normalize=True, feature_scale=(1.0, 0.0, 2.0, 1.0)
    ),
    "softmax_classifier": Case(
        (dense(8, "relu"), dense(3, "softmax")),
        loss="sparse_categorical_crossentropy",
        normalize=True,
    ),
    "sigmoid_classifier": Case((dense(8, "relu"), dense(1, "sigmoid")), loss="binary_crossentropy"),
    # Keras' layers with their parameters, each between two dense layers
    **{
        f"{name}_layer": Case((dense(6), layer, dense(2)))
        for name, layer in [
            ("relu", {"type": "relu"}),
            ("relu_leaky", {"type": "relu", "negative_slope": 0.2}),
            ("relu_clipped", {"type": "relu", "max_value": 1.5}),
            (
                "relu_all",
                {"type": "relu", "max_value": 2.0, "negative_slope": 0.1, "threshold": 0.5},
            ),
            ("leaky_relu", {"type": "leaky_relu", "negative_slope": 0.05}),
            ("elu", {"type": "elu", "alpha": 0.5}),
            ("elu_negative", {"type": "elu", "alpha": -0.3}),
            ("prelu", {"type": "prelu", "alpha_initializer": {"name": "constant", "value": 0.3}}),
            ("rescaling", {"type": "rescaling", "scale": 0.25, "offset": -1.0}),
            (
                "normalization",
                {
                    "type": "normalization",
                    "mean": [0.5, -1, 0, 2, 1, 0],
                    "variance": [4.0, 0.25, 1, 9, 0.01, 2],
                },
            ),
            (
                "normalization_invert",
                {"type": "normalization", "mean": 1.0, "variance": 0.5, "invert": True},
            ),
            ("gaussian_noise", {"type": "gaussian_noise", "stddev": 0.5}),
            ("gaussian_dropout", {"type": "gaussian_dropout", "rate": 0.3}),
            ("alpha_dropout", {"type": "alpha_dropout", "rate": 0.3}),
            (
                "activity_regularization",
                {"type": "activity_regularization", "l1": 0.01, "l2": 0.01},
            ),
        ]
    },  # fmt: skip
    "constraints": Case(
        (
            dense(
                6,
                "relu",
                kernel_constraint={"name": "max_norm", "max_value": 0.5},
                bias_constraint="non_neg",
            ),
            dense(
                2,
                kernel_constraint={"name": "min_max_norm", "min_value": 0.2, "axis": 1},
                bias_constraint={"name": "unit_norm"},
            ),
        )
    ),  # fmt: skip
    "image": Case(  # a 2×2 input, values scaled before its flatten
        (
            {"type": "rescaling", "scale": 0.5},
            {"type": "leaky_relu"},
            {"type": "flatten"},
            dense(5, "relu"),
            dense(2),
        ),
        input_shape=(2, 2),
    ),
    "image_normalized": Case(
        ({"type": "flatten"}, dense(5, "relu"), dense(2)),
        normalize=True,
        feature_scale=(1.0, 40.0, 1e-9, 5.0),
        feature_shift=(0.0, 100.0, -3.0, 0.5),
        input_shape=(2, 2),
    ),
    "everything": Case(
        (
            dense(8, "selu", use_bias=False),
            {"type": "dropout", "rate": 0.2},
            {"type": "batch_normalization", "momentum": 0.5},
            {"type": "activation", "activation": "gelu"},
            {"type": "layer_normalization"},
            dense(3, "softmax"),
        ),
        loss="sparse_categorical_crossentropy",
        normalize=True,
        feature_scale=(1.0, 10.0, 0.1, 2.0),
    ),
}


@dataclass(frozen=True)
class Trained:
    spec: dict[str, Any]
    model_file: bytes  # what the worker stores
    x: np.ndarray  # rows to predict (not the training rows)
    expected: np.ndarray  # fitq's predict on x, as the API computes it

    def tensor(self, name: str) -> np.ndarray:
        return safetensors.numpy.load(self.model_file)[name]


def job_spec(case: Case) -> dict[str, Any]:
    body = {
        "model": {"input_shape": list(case.input_shape), "layers": list(case.layers)},
        "compile": {"optimizer": "adam", "loss": case.loss},
        "fit": {"epochs": 4, "batch_size": 16, "normalize": case.normalize},
        "dataset_id": "d",
    }
    return parse_spec(body).model_dump(mode="json")


def features(case: Case, rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, INPUT_DIM)) * case.feature_scale + case.feature_shift
    return x.astype(np.float32)


@functools.cache
def trained(name: str) -> Trained:
    """CASES[name], trained for a few epochs on 64 random rows (once per test session)."""
    case = CASES[name]
    spec = job_spec(case)
    x = features(case, 64, seed=0)
    units = spec["model"]["layers"][-1].get("units", 0)
    rng = np.random.default_rng(1)
    if case.loss == "sparse_categorical_crossentropy":
        y = rng.integers(0, units, size=len(x))
    elif case.loss == "binary_crossentropy":
        y = rng.integers(0, 2, size=(len(x), 1)).astype(np.float32)
    else:
        y = rng.normal(size=(len(x), units)).astype(np.float32)
    trainer = Trainer(spec["model"], spec["compile"], spec["fit"], spec["seed"], device="cpu")
    trainer.fit(x, y)
    model_file = trainer.export_safetensors({"fitq_spec": json.dumps(spec, sort_keys=True)})
    x_new = features(case, 32, seed=2)
    expected = load_predictor(spec["model"], model_file, "cpu").predict(x_new)
    return Trained(spec, model_file, x_new, expected)


def max_difference(got: np.ndarray, expected: np.ndarray) -> float:
    assert got.shape == expected.shape, (got.shape, expected.shape)
    return float(np.abs(got.astype(np.float64) - expected).max())


def model_file(layers: list[dict[str, Any]], tensors: dict[str, Any], input_dim: int = 2) -> bytes:
    """A hand-made model file: `layers` as the stored spec's model (not normalized)."""
    spec = {"model": {"input_dim": input_dim, "layers": layers}}
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}
    return safetensors.numpy.save(arrays, {"fitq_spec": json.dumps(spec)})
