"""A trained model's safetensors file, read and checked once for every exporter.

The file is what the worker writes (`Trainer.export_safetensors`): `layers.{i}.kernel`
[in, out], `layers.{i}.bias`, `layers.{i}.gamma/beta/moving_mean/moving_variance`,
`layers.{i}.alpha` (prelu) for the i-th entry of the normalized spec's `model.layers`,
`normalization.mean/std` [input_dim] when the model was trained with `fit.normalize`, and
the normalized spec as JSON in the metadata key `fitq_spec`. Read with numpy alone: the
API serves exports without torch.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import safetensors.numpy

from fitq.service.errors import Conflict, InvalidInput

SPEC_METADATA_KEY = "fitq_spec"
HEADER_MAX_BYTES = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


# layer types without tensors of their own (their spec says all they compute)
WEIGHTLESS = frozenset(
    {"dropout", "activation", "relu", "leaky_relu", "elu", "flatten", "rescaling",
     "normalization", "gaussian_noise", "gaussian_dropout", "alpha_dropout",
     "activity_regularization"}
)  # fmt: skip


@dataclass(frozen=True)
class Layer:
    """One entry of `model.layers`, with its tensors by fitq's names (float32)."""

    index: int
    type: str  # the normalized spec's layer type
    config: Mapping[str, Any]  # the normalized spec's entry, as stored
    weights: Mapping[str, np.ndarray]
    in_dim: int
    out_dim: int

    def activation(self) -> str:
        """A dense or activation layer's canonical activation name (missing → linear)."""
        return str(self.config.get("activation") or "linear")


@dataclass(frozen=True)
class TrainedModel:
    """What every exporter reads: the input width and shape, the stored normalization (or
    None), the layers in order, and the whole stored job spec."""

    input_dim: int
    input_shape: tuple[int, ...]  # the rows' shape before they were stored flat
    layers: tuple[Layer, ...]
    mean: np.ndarray | None  # [input_dim], float32
    std: np.ndarray | None  # [input_dim], float32, > 0
    spec: Mapping[str, Any]

    @property
    def output_dim(self) -> int:
        return self.layers[-1].out_dim


def read(data: bytes) -> TrainedModel:
    """The model in a fitq safetensors file.

    Raises InvalidInput when the bytes are not a fitq model file (not safetensors, no
    spec, a tensor missing, misshapen or left over), and Conflict when the model holds a
    layer type that no exporter knows (a model newer than this code)."""
    spec = _spec(data)
    try:
        tensors = safetensors.numpy.load(bytes(data))
    except Exception as exc:  # safetensors raises its own SafetensorError, or a TypeError
        raise InvalidInput(f"not a safetensors file: {exc}") from None
    model_cfg = spec.get("model")
    if not isinstance(model_cfg, Mapping):
        raise InvalidInput(f"the {SPEC_METADATA_KEY} metadata has no 'model' object")
    input_dim = model_cfg.get("input_dim")
    specs = model_cfg.get("layers")
    if not isinstance(input_dim, int) or input_dim < 1 or not isinstance(specs, list) or not specs:
        raise InvalidInput("the model spec needs an input_dim >= 1 and at least one layer")
    shape = model_cfg.get("input_shape", [input_dim])  # absent from older models' specs
    if (
        not isinstance(shape, list)
        or not shape
        or not all(type(d) is int and d >= 1 for d in shape)
        or math.prod(shape) != input_dim
    ):
        raise InvalidInput(f"the model spec's input_shape {shape!r} does not hold input_dim values")
    pool = {name: _float32(name, t) for name, t in tensors.items()}
    mean, std = _normalization(pool, input_dim)
    layers = []
    dim = input_dim
    for i, cfg in enumerate(specs):
        layer = _layer(i, cfg, dim, pool)
        layers.append(layer)
        dim = layer.out_dim
    if pool:
        raise InvalidInput(f"tensors that belong to no layer: {', '.join(sorted(pool))}")
    return TrainedModel(input_dim, tuple(shape), tuple(layers), mean, std, spec)


def _spec(data: bytes) -> dict[str, Any]:
    """The JSON spec in the header's metadata (safetensors' numpy API does not return it)."""
    if len(data) < 8:
        raise InvalidInput("not a safetensors file: too short")
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(HEADER_MAX_BYTES, len(data) - 8):
        raise InvalidInput("not a safetensors file: bad header length")
    try:
        header = json.loads(data[8 : 8 + size])
        raw = header.get("__metadata__", {}).get(SPEC_METADATA_KEY)
    except (ValueError, AttributeError):
        raise InvalidInput("not a safetensors file: the header is not a JSON object") from None
    if raw is None:
        raise InvalidInput(f"not a fitq model: no {SPEC_METADATA_KEY!r} in the metadata")
    try:
        spec = json.loads(raw)
    except (ValueError, TypeError):
        raise InvalidInput(f"the {SPEC_METADATA_KEY} metadata is not JSON") from None
    if not isinstance(spec, dict):
        raise InvalidInput(f"the {SPEC_METADATA_KEY} metadata is not a JSON object")
    return spec


def _float32(name: str, t: np.ndarray) -> np.ndarray:
    if not np.issubdtype(t.dtype, np.floating):
        raise InvalidInput(f"tensor {name} is {t.dtype}, not floating point")
    return np.ascontiguousarray(t, dtype=np.float32)


def _take(pool: dict[str, np.ndarray], name: str, shape: tuple[int, ...]) -> np.ndarray:
    t = pool.pop(name, None)
    if t is None:
        raise InvalidInput(f"the model file has no tensor {name}")
    if t.shape != shape:
        raise InvalidInput(f"tensor {name} has shape {list(t.shape)}, expected {list(shape)}")
    return t


def _normalization(
    pool: dict[str, np.ndarray], input_dim: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    present = [n for n in ("normalization.mean", "normalization.std") if n in pool]
    if not present:
        return None, None
    mean = _take(pool, "normalization.mean", (input_dim,))
    std = _take(pool, "normalization.std", (input_dim,))
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise InvalidInput("normalization.mean/std must be finite, with every std > 0")
    return mean, std


def _layer(i: int, cfg: Any, in_dim: int, pool: dict[str, np.ndarray]) -> Layer:
    if not isinstance(cfg, Mapping):
        raise InvalidInput(f"layer {i} of the model spec is not an object")
    kind = cfg.get("type")
    prefix = f"layers.{i}."
    weights: dict[str, np.ndarray] = {}
    out_dim = in_dim
    if kind == "dense":
        units = cfg.get("units")
        if not isinstance(units, int) or units < 1:
            raise InvalidInput(f"layer {i}: dense units must be an integer >= 1")
        out_dim = units
        weights["kernel"] = _take(pool, prefix + "kernel", (in_dim, units))
        if cfg.get("use_bias", True):
            weights["bias"] = _take(pool, prefix + "bias", (units,))
    elif kind in ("batch_normalization", "layer_normalization"):
        if cfg.get("scale", True):
            weights["gamma"] = _take(pool, prefix + "gamma", (in_dim,))
        if cfg.get("center", True):
            weights["beta"] = _take(pool, prefix + "beta", (in_dim,))
        if kind == "batch_normalization":
            for name in ("moving_mean", "moving_variance"):
                weights[name] = _take(pool, prefix + name, (in_dim,))
    elif kind == "prelu":
        weights["alpha"] = _take(pool, prefix + "alpha", (in_dim,))
    elif kind not in WEIGHTLESS:
        raise Conflict(f"layer {i}: a {kind!r} layer cannot be exported")
    return Layer(i, str(kind), cfg, weights, in_dim, out_dim)
