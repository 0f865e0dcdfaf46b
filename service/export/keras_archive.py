"""A trained model as a Keras 3 `.keras` archive, written without Keras.

The archive is what `keras.Model.save` writes (keras/src/saving/saving_lib.py): a zip,
stored uncompressed, of `metadata.json`, `config.json` (the `Sequential`'s serialized
config) and `model.weights.h5`, where the variables of the k-th layer of a class sit in
the HDF5 group `layers/<class in snake case>[_k]/vars` as datasets "0", "1", … in the
layer's own order (Dense: kernel, bias; BatchNormalization: gamma, beta, moving_mean,
moving_variance; LayerNormalization: gamma, beta). Layer configs carry only keys that
every Keras 3 release accepts, so `keras.saving.load_model` opens it on any backend.

Layers are named after fitq's: the layer of `layers.{i}.*` is `<type>_{i}` (`dense_0`).
The input is the model's `input_shape` ((None, 28, 28) for a model that flattens images);
the layers before its flatten act on each value alone, as the spec requires.

Normalization: fitq computes (x − mean) / std; Keras' `Normalization` layer computes
(x − mean) / max(√variance, ε) with ε = `keras.config.epsilon()` (1e-7). It gets
variance = std², exact in float64; float32 √ of float32(std²) is std again (a property
of correctly rounded square roots), so the two agree bit for bit while every std is at
least NORMALIZATION_FLOOR. When one is not, a `Rescaling` by a power of two comes first
and mean and std are scaled by it: multiplying by 2ᵏ is exact in floating point, and
(2ᵏx − 2ᵏm) / 2ᵏs rounds as (x − m) / s.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import h5py
import numpy as np

from fitq.service.errors import Conflict
from fitq.service.export import trained
from fitq.service.export.trained import Layer, TrainedModel

# metadata.json's keras_version: the oldest Keras 3 release the configs are written for
KERAS_VERSION = "3.8.0"
# The smallest and largest std divided by as it is: the floor sits 2^3 above Keras'
# default epsilon of 1e-7, so a user's larger epsilon up to ~9e-7 still leaves it alone;
# the ceiling keeps std² (the variance Keras reads) finite in float32.
NORMALIZATION_FLOOR = 2.0**-20
NORMALIZATION_CEILING = 2.0**63
FLOAT32_MAX = float(np.finfo(np.float32).max)

# fitq's canonical activation → the Keras 3 name whose default arguments match it
# (leaky_relu negative_slope 0.2, elu alpha 1, gelu approximate=False, hard_sigmoid
# relu6(x + 3) / 6, silu x·σ(x)).
ACTIVATIONS = {
    name: name
    for name in (
        "linear", "relu", "sigmoid", "tanh", "softmax", "leaky_relu", "elu", "selu", "gelu",
        "softplus", "softsign", "silu", "hard_sigmoid",
    )
}  # fmt: skip


# a layer's group in model.weights.h5 is named after its class (naming.to_snake_case)
H5_STEMS = {
    "Rescaling": "rescaling",
    "Normalization": "normalization",
    "Dense": "dense",
    "Dropout": "dropout",
    "Activation": "activation",
    "BatchNormalization": "batch_normalization",
    "LayerNormalization": "layer_normalization",
    "ReLU": "re_lu",
    "LeakyReLU": "leaky_re_lu",
    "ELU": "elu",
    "PReLU": "p_re_lu",
    "Flatten": "flatten",
    "GaussianNoise": "gaussian_noise",
    "GaussianDropout": "gaussian_dropout",
    "AlphaDropout": "alpha_dropout",
    "ActivityRegularization": "activity_regularization",
}
GAUSSIAN_NOISE_MAX_STDDEV = 1.0  # Keras 3's GaussianNoise refuses a larger stddev
# fitq's constraint → Keras' class (same parameters, same names)
CONSTRAINTS = {
    "max_norm": "MaxNorm",
    "non_neg": "NonNeg",
    "unit_norm": "UnitNorm",
    "min_max_norm": "MinMaxNorm",
}


@dataclass
class _KerasLayer:
    class_name: str
    config: dict[str, Any]
    weights: list[np.ndarray] = field(default_factory=list)
    input_shape: tuple[int, ...] | None = None  # for build_config, on layers with state


def to_keras(safetensors_bytes: bytes, *, saved_at: datetime | None = None) -> bytes:
    """The `.keras` archive of a fitq model file; `saved_at` (default: now) is the
    metadata's date_saved. InvalidInput for a file that is not a fitq model, Conflict
    for a model Keras cannot express (see the module docstring)."""
    model = trained.read(safetensors_bytes)
    layers = _normalization_layers(model) + [_layer(layer) for layer in model.layers]
    when = saved_at or datetime.now(UTC)
    metadata = {"keras_version": KERAS_VERSION, "date_saved": when.strftime("%Y-%m-%d@%H:%M:%S")}
    files = {
        "metadata.json": json.dumps(metadata).encode(),
        "config.json": json.dumps(_model_config(model, layers)).encode(),
        "model.weights.h5": _weights_h5(layers),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, content in files.items():  # dated saved_at: the same call, the same bytes
            zf.writestr(zipfile.ZipInfo(name, date_time=when.timetuple()[:6]), content)
    return buf.getvalue()


def _base(name: str) -> dict[str, Any]:
    return {"name": name, "trainable": True, "dtype": "float32"}


def _normalization_layers(model: TrainedModel) -> list[_KerasLayer]:
    if model.mean is None or model.std is None:
        return []
    std = model.std.astype(np.float64)
    smallest, largest = float(std.min()), float(std.max())
    shift = 0
    if smallest < NORMALIZATION_FLOOR:
        shift = math.ceil(math.log2(NORMALIZATION_FLOOR / smallest))
    elif largest > NORMALIZATION_CEILING:
        shift = -math.ceil(math.log2(largest / NORMALIZATION_CEILING))
    scale = 2.0**shift
    mean, std = model.mean.astype(np.float64) * scale, std * scale  # exact: a power of two
    if (
        std.min() < NORMALIZATION_FLOOR
        or std.max() > NORMALIZATION_CEILING
        or np.abs(mean).max() > FLOAT32_MAX
    ):
        raise Conflict(
            f"the normalization's std spans {smallest:.3g} to {largest:.3g} (|mean| up to "
            f"{float(np.abs(model.mean).max()):.3g}): more than Keras' Normalization layer "
            "can divide by exactly (it divides by at least 1e-7, in float32)"
        )
    out = []
    if shift:
        rescale = {**_base("normalization_scale"), "scale": scale, "offset": 0.0}
        out.append(_KerasLayer("Rescaling", rescale))
    # one statistic per value of an input of any shape (axis 1.. of a (None, 28, 28) input)
    shape = model.input_shape
    config = {
        **_base("normalization"),
        "axis": -1 if len(shape) == 1 else list(range(1, len(shape) + 1)),
        "mean": mean.reshape(shape).tolist(),
        "variance": (std * std).reshape(shape).tolist(),  # exact: std has 24 significant bits
    }
    out.append(_KerasLayer("Normalization", config, [], model.input_shape))
    return out


def _activation(layer: Layer) -> str:
    name = layer.activation()
    if name not in ACTIVATIONS:
        raise Conflict(f"layer {layer.index}: activation {name!r} has no Keras equivalent here")
    return ACTIVATIONS[name]


def _layer(layer: Layer) -> _KerasLayer:
    """The Keras layer of a fitq layer, its config and its variables in Keras' order."""
    cfg, w = layer.config, layer.weights
    base = _base(f"{layer.type}_{layer.index}")
    if layer.type == "dense":
        reg = cfg.get("kernel_regularizer")
        config = {
            **base,
            "units": layer.out_dim,
            "activation": _activation(layer),
            "use_bias": "bias" in w,
            "kernel_regularizer": None if not reg else _l1l2(reg),
            "kernel_constraint": _constraint(cfg.get("kernel_constraint")),
            "bias_constraint": _constraint(cfg.get("bias_constraint")),
        }
        weights = [w["kernel"]] + ([w["bias"]] if "bias" in w else [])
        return _KerasLayer("Dense", config, weights, (layer.in_dim,))
    if layer.type == "activation":
        return _KerasLayer("Activation", {**base, "activation": _activation(layer)})
    if layer.type in _AS_CONFIGURED:
        class_name, keys = _AS_CONFIGURED[layer.type]
        return _KerasLayer(class_name, {**base, **{k: _number(cfg[k]) for k in keys}})
    if layer.type == "prelu":
        config = {
            **base,
            "alpha_initializer": _serialized("keras.initializers", "Zeros", {}),
            "alpha_regularizer": None,
            "alpha_constraint": None,
            "shared_axes": None,
        }  # the initializer matters no more: the trained alpha is the weight
        return _KerasLayer("PReLU", config, [w["alpha"]], (layer.in_dim,))
    if layer.type == "flatten":
        return _KerasLayer("Flatten", {**base, "data_format": "channels_last"})
    if layer.type == "rescaling":
        scale, offset = float(cfg["scale"]), float(cfg["offset"])
        return _KerasLayer("Rescaling", {**base, "scale": scale, "offset": offset})
    if layer.type == "normalization":
        stats = {k: [float(v) for v in cfg[k]] for k in ("mean", "variance")}
        config = {**base, "axis": -1, **stats, "invert": bool(cfg["invert"])}
        return _KerasLayer("Normalization", config, [], (layer.in_dim,))
    if layer.type == "gaussian_noise":
        stddev = float(cfg["stddev"])
        if stddev > GAUSSIAN_NOISE_MAX_STDDEV:
            raise Conflict(
                f"layer {layer.index}: GaussianNoise(stddev={stddev:g}): Keras 3 takes a stddev "
                "of at most 1 (the noise is training's only; predictions do not depend on it)"
            )
        return _KerasLayer("GaussianNoise", {**base, "stddev": stddev, "seed": None})
    norm = {
        **base,
        "axis": -1,
        "epsilon": float(cfg.get("epsilon", 1e-3)),
        "center": "beta" in w,
        "scale": "gamma" in w,
    }
    order = ["gamma", "beta"]
    if layer.type == "batch_normalization":
        norm["momentum"] = float(cfg.get("momentum", 0.99))
        order += ["moving_mean", "moving_variance"]  # non-trainable, after the trainable
        class_name = "BatchNormalization"
    else:
        class_name = "LayerNormalization"
    return _KerasLayer(class_name, norm, [w[k] for k in order if k in w], (layer.in_dim,))


# types whose Keras layer takes the spec's parameters as they are: (class, keys)
_AS_CONFIGURED: dict[str, tuple[str, tuple[str, ...]]] = {
    "dropout": ("Dropout", ("rate",)),
    "relu": ("ReLU", ("max_value", "negative_slope", "threshold")),
    "leaky_relu": ("LeakyReLU", ("negative_slope",)),
    "elu": ("ELU", ("alpha",)),
    "gaussian_dropout": ("GaussianDropout", ("rate",)),
    "alpha_dropout": ("AlphaDropout", ("rate",)),
    "activity_regularization": ("ActivityRegularization", ("l1", "l2")),
}


def _number(value: Any) -> Any:
    return None if value is None else float(value)


def _constraint(spec: Any) -> dict[str, Any] | None:
    """A dense weight's constraint as Keras serializes it (None: none)."""
    if not spec:
        return None
    config = {k: v for k, v in spec.items() if k != "name"}
    return _serialized("keras.constraints", CONSTRAINTS[spec["name"]], config)


def _l1l2(reg: Any) -> dict[str, Any]:
    config = {"l1": float(reg.get("l1", 0.0)), "l2": float(reg.get("l2", 0.0))}
    return _serialized("keras.regularizers", "L1L2", config)


def _serialized(module: str, class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"module": module, "class_name": class_name, "config": config, "registered_name": None}


def _model_config(model: TrainedModel, layers: list[_KerasLayer]) -> dict[str, Any]:
    shape = [None, *model.input_shape]
    entries = [
        _serialized(
            "keras.layers",
            "InputLayer",
            {"batch_shape": shape, "dtype": "float32", "sparse": False, "name": "input"},
        )
    ]
    for layer in layers:
        entry = _serialized("keras.layers", layer.class_name, layer.config)
        if layer.input_shape is not None:
            entry["build_config"] = {"input_shape": [None, *layer.input_shape]}
        entries.append(entry)
    config = {**_base("fitq"), "layers": entries, "build_input_shape": shape}
    return {**_serialized("keras", "Sequential", config), "build_config": {"input_shape": shape}}


def _weights_h5(layers: list[_KerasLayer]) -> bytes:
    """model.weights.h5: one `layers/<path>/vars` group per layer, as saving_lib walks a
    Sequential (its layers in order, each addressed by its class, numbered per class)."""
    buf = io.BytesIO()
    used: dict[str, int] = {}
    with h5py.File(buf, "w") as f:
        f.create_group("vars").attrs["name"] = "fitq"
        for layer in layers:
            stem = H5_STEMS[layer.class_name]
            count = used.get(stem)
            used[stem] = 0 if count is None else count + 1
            path = stem if count is None else f"{stem}_{count + 1}"
            group = f.create_group(f"layers/{path}/vars")
            group.attrs["name"] = layer.config["name"]
            for k, w in enumerate(layer.weights):
                group.create_dataset(str(k), data=np.asarray(w, dtype=np.float32))
    return buf.getvalue()
