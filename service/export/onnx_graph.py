"""A trained model as an ONNX graph: input `x` [N, input_dim] float32 (N dynamic),
output `y` [N, output_dim], the final layer's values — what fitq's predict returns.

Opset 17 (IR version 8, so runtimes from 2021 on load it) and standard operators only:
Sub/Div for the normalization (fitq's own (x − mean) / std), Gemm (MatMul without a
bias) for dense, BatchNormalization with the moving statistics and LayerNormalization
(axis −1) in their inference form, nothing for dropout, the noise layers, activity
regularization and flatten (rows are flat: a model with an `input_shape` of (28, 28)
takes x as [N, 784] here). Activations: Relu, Sigmoid, Tanh, Softmax (axis −1),
LeakyRelu (α 0.2, or the layer's slope), Elu (α 1, or the layer's), Selu, Softplus,
Softsign, HardSigmoid (α 1/6, β ½: relu6(x + 3) / 6), x·Sigmoid(x) for silu, gelu's exact
form x·½·(1 + Erf(x/√2)) (the Gelu operator needs opset 20); PRelu with the trained slope;
Keras' relu with max_value/threshold/slope as Where(x > t, Min(x, max), slope·(x − t)).
Rescaling is Mul and Add; Keras' Normalization Sub and Div (Mul and Add with `invert`)
by max(√variance, 1e-7), computed in float32 as the engine does. Initializers keep fitq's tensor
names (`layers.0.kernel`, `normalization.mean`, …); the stored spec is the model's
`fitq_spec` metadata property.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fitq.service.errors import Conflict
from fitq.service.export import trained
from fitq.service.export.trained import SPEC_METADATA_KEY, Layer

OPSET = 17
IR_VERSION = 8  # the IR of opset 17's release (onnx 1.12)
INPUT, OUTPUT = "x", "y"
LEAKY_RELU_SLOPE = 0.2  # Keras 3's default: the leaky_relu activation's slope
KERAS_EPSILON = 1e-7  # Keras' Normalization divides by at least this
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


class _Graph:
    """Nodes and initializers as they are added; each op returns its output's name."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, onnx.TensorProto] = {}

    def const(self, name: str, value: np.ndarray | float) -> str:
        """An initializer; a name used before (gelu's constants) is the same tensor."""
        if name not in self.initializers:
            array = np.asarray(value, dtype=np.float32)
            self.initializers[name] = numpy_helper.from_array(array, name)
        return name

    def op(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> str:
        out = f"{op_type.lower()}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out


def _gelu(g: _Graph, x: str) -> str:
    """x·½·(1 + erf(x/√2)), as torch's exact gelu computes it."""
    erf = g.op("Erf", [g.op("Mul", [x, g.const("gelu.inv_sqrt2", 1.0 / math.sqrt(2.0))])])
    half_x = g.op("Mul", [x, g.const("gelu.half", 0.5)])
    return g.op("Mul", [half_x, g.op("Add", [erf, g.const("gelu.one", 1.0)])])


# fitq's canonical activation → the nodes that compute it
ACTIVATIONS: dict[str, Callable[[_Graph, str], str]] = {
    "linear": lambda g, x: x,
    "relu": lambda g, x: g.op("Relu", [x]),
    "sigmoid": lambda g, x: g.op("Sigmoid", [x]),
    "tanh": lambda g, x: g.op("Tanh", [x]),
    "softmax": lambda g, x: g.op("Softmax", [x], axis=-1),
    "leaky_relu": lambda g, x: g.op("LeakyRelu", [x], alpha=LEAKY_RELU_SLOPE),
    "elu": lambda g, x: g.op("Elu", [x], alpha=1.0),
    "selu": lambda g, x: g.op("Selu", [x], alpha=SELU_ALPHA, gamma=SELU_SCALE),
    "gelu": _gelu,
    "softplus": lambda g, x: g.op("Softplus", [x]),
    "softsign": lambda g, x: g.op("Softsign", [x]),
    "silu": lambda g, x: g.op("Mul", [x, g.op("Sigmoid", [x])]),
    "hard_sigmoid": lambda g, x: g.op("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5),
}


def to_onnx(safetensors_bytes: bytes) -> bytes:
    """The serialized ONNX model of a fitq model file. InvalidInput for a file that is
    not a fitq model, Conflict for a layer or activation with no ONNX form here."""
    model = trained.read(safetensors_bytes)
    g = _Graph()
    h = INPUT
    if model.mean is not None and model.std is not None:
        h = g.op("Sub", [h, g.const("normalization.mean", model.mean)])
        h = g.op("Div", [h, g.const("normalization.std", model.std)])
    for layer in model.layers:
        h = _layer(g, layer, h)
    g.nodes.append(helper.make_node("Identity", [h], [OUTPUT]))
    graph = helper.make_graph(
        g.nodes,
        "fitq",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", model.input_dim])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", model.output_dim])],
        initializer=list(g.initializers.values()),
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="fitq",
        producer_version=_fitq_version(),
    )
    helper.set_model_props(proto, {SPEC_METADATA_KEY: json.dumps(model.spec, sort_keys=True)})
    return proto.SerializeToString()


def _activation(g: _Graph, layer: Layer, h: str) -> str:
    build = ACTIVATIONS.get(layer.activation())
    if build is None:
        raise Conflict(
            f"layer {layer.index}: activation {layer.activation()!r} has no ONNX form here"
        )
    return build(g, h)


# layers that compute nothing at inference (rows are flat: flatten is the identity too)
_IDENTITY = frozenset(
    {"dropout", "flatten", "gaussian_noise", "gaussian_dropout", "alpha_dropout",
     "activity_regularization"}
)  # fmt: skip


def _keras_relu(g: _Graph, layer: Layer, h: str) -> str:
    """Keras' ReLU layer: min(x, max_value) above the threshold, slope·(x − threshold)."""
    cfg, prefix = layer.config, f"layers.{layer.index}."
    slope, t = float(cfg["negative_slope"]), float(cfg["threshold"])
    top = None if cfg.get("max_value") is None else float(cfg["max_value"])
    if t == 0 and top is None:
        return g.op("LeakyRelu", [h], alpha=slope) if slope else g.op("Relu", [h])
    if t == 0 and slope == 0 and top is not None:
        return g.op("Clip", [h, g.const(prefix + "min", 0.0), g.const(prefix + "max", top)])
    above = h if top is None else g.op("Min", [h, g.const(prefix + "max_value", top)])
    below = g.op("Mul", [g.op("Sub", [h, g.const(prefix + "threshold", t)]),
                         g.const(prefix + "negative_slope", slope)])  # fmt: skip
    return g.op("Where", [g.op("Greater", [h, g.const(prefix + "threshold", t)]), above, below])


def _preprocessing(g: _Graph, layer: Layer, h: str) -> str:
    """rescaling: x·scale + offset; normalization: (x − mean) / d or mean + x·d."""
    cfg, prefix = layer.config, f"layers.{layer.index}."
    if layer.type == "rescaling":
        h = g.op("Mul", [h, g.const(prefix + "scale", float(cfg["scale"]))])
        return g.op("Add", [h, g.const(prefix + "offset", float(cfg["offset"]))])
    mean = g.const(prefix + "mean", np.asarray(cfg["mean"], np.float32))
    variance = np.asarray(cfg["variance"], np.float32)
    d = g.const(prefix + "d", np.maximum(np.sqrt(variance), np.float32(KERAS_EPSILON)))
    if cfg["invert"]:
        return g.op("Add", [mean, g.op("Mul", [h, d])])
    return g.op("Div", [g.op("Sub", [h, mean]), d])


def _layer(g: _Graph, layer: Layer, h: str) -> str:
    prefix, w = f"layers.{layer.index}.", layer.weights
    if layer.type in _IDENTITY:
        return h
    if layer.type == "relu":
        return _keras_relu(g, layer, h)
    if layer.type == "leaky_relu":
        return g.op("LeakyRelu", [h], alpha=float(layer.config["negative_slope"]))
    if layer.type == "elu":
        return g.op("Elu", [h], alpha=float(layer.config["alpha"]))
    if layer.type == "prelu":
        return g.op("PRelu", [h, g.const(prefix + "alpha", w["alpha"])])
    if layer.type in ("rescaling", "normalization"):
        return _preprocessing(g, layer, h)
    if layer.type == "dense":
        kernel = g.const(prefix + "kernel", w["kernel"])
        if "bias" in w:
            h = g.op("Gemm", [h, kernel, g.const(prefix + "bias", w["bias"])])
        else:
            h = g.op("MatMul", [h, kernel])
        return _activation(g, layer, h)
    if layer.type == "activation":
        return _activation(g, layer, h)
    # scale and bias are required inputs (LayerNormalization's bias is not): γ = 1,
    # β = 0 where the layer has none, which changes no value
    ones, zeros = np.ones(layer.in_dim, np.float32), np.zeros(layer.in_dim, np.float32)
    gamma = g.const(prefix + "gamma", w.get("gamma", ones))
    beta = g.const(prefix + "beta", w.get("beta", zeros))
    epsilon = float(layer.config.get("epsilon", 1e-3))
    if layer.type == "batch_normalization":
        stats = [g.const(prefix + k, w[k]) for k in ("moving_mean", "moving_variance")]
        return g.op("BatchNormalization", [h, gamma, beta, *stats], epsilon=epsilon)
    return g.op("LayerNormalization", [h, gamma, beta], axis=-1, epsilon=epsilon)


def _fitq_version() -> str:
    try:
        return version("fitq")
    except PackageNotFoundError:
        return "unknown"
