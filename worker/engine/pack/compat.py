"""Which jobs may train in one pack: `compatibility_key(spec)`.

Members of a pack share one computation, so they share what fixes its shapes and its
kernels: `input_dim`, each layer's type and the fields that shape it (dense units,
activation, use_bias; an activation layer's function; layer normalization's center
and scale), the loss (name, from_logits, delta), the metrics, the optimizer's name and
`batch_size`. Everything else the pack implements may differ per member: seed,
initializers, regularizer and dropout rates, layer-normalization epsilon, every
optimizer hyperparameter (nesterov, amsgrad and centered included), epochs,
validation, early stopping, normalize, shuffle, and the dataset (the same `input_dim`,
any number of rows).

The key is None (the job trains solo) for anything the pack does not implement, so a
packed member never computes other math than its solo run: a layer type other than
dense, dropout, activation and layer_normalization (`batch_normalization` among them:
its batch statistics would see a short batch's padding), a loss other than the three
cross-entropies, mse, mae and huber, a metric other than accuracy, mae and mse, an
optimizer other than sgd, adagrad, rmsprop, adam and adamw, and any field of the spec
this module does not list, unless it is off (None, 0 or false). A field the spec gains
later therefore keeps its jobs solo until the pack learns it.

Pure standard library: the API computes the key at submit without importing torch.
The device is not part of the key: a worker packs only the jobs it claimed for its
own device.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

KEY_VERSION = 2  # bump when what the key covers changes: old keys then match nothing

# per layer type: (fields that shape the computation, fields that may differ per member)
_LAYERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "dense": (
        ("units", "activation", "use_bias"),
        ("kernel_initializer", "bias_initializer", "kernel_regularizer"),
    ),
    "dropout": ((), ("rate",)),
    "activation": (("activation",), ()),
    "layer_normalization": (("center", "scale"), ("epsilon",)),
}
_LOSS_FIELDS = ("name", "from_logits", "delta")
_LOSSES = frozenset(
    {"sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
     "mean_squared_error", "mean_absolute_error", "huber"}
)  # fmt: skip
_METRICS = frozenset({"accuracy", "mae", "mse"})
_OPTIMIZER_FIELDS: dict[str, tuple[str, ...]] = {
    "sgd": ("momentum", "nesterov"),
    "adagrad": ("initial_accumulator_value", "epsilon"),
    "rmsprop": ("rho", "momentum", "epsilon", "centered"),
    "adam": ("beta_1", "beta_2", "epsilon", "amsgrad"),
    "adamw": ("beta_1", "beta_2", "epsilon", "amsgrad"),
}
_OPTIMIZER_COMMON = ("name", "learning_rate", "weight_decay")
_FIT_FIELDS = ("epochs", "batch_size", "validation_split", "shuffle", "early_stopping", "normalize")
_MODEL_FIELDS = ("input_dim", "input_shape", "layers")


def _off(value: Any) -> bool:
    """A field the pack does not implement may be present only switched off."""
    return value is None or value is False or (type(value) in (int, float) and value == 0)


def _only(part: Mapping[str, Any], known: tuple[str, ...]) -> bool:
    """Every field of `part` is one the pack implements, or is off."""
    return all(key in known or _off(value) for key, value in part.items())


def structure(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a pack's members share, as plain JSON (None: this spec trains solo). `spec`
    is normalized (docs/spec-contract.md): every key present, every name canonical."""
    model, compile_, fit = spec["model"], spec["compile"], spec["fit"]
    if not (_only(model, _MODEL_FIELDS) and _only(fit, _FIT_FIELDS)):
        return None
    if model.get("input_shape") not in (None, [model["input_dim"]]):  # rows of features only
        return None
    layers = []
    for layer in model["layers"]:
        fields = _LAYERS.get(layer.get("type"))
        if fields is None or not _only(layer, ("type", *fields[0], *fields[1])):
            return None
        layers.append({"type": layer["type"], **{f: layer.get(f) for f in fields[0]}})
    loss, optimizer = compile_["loss"], compile_["optimizer"]
    extra = _OPTIMIZER_FIELDS.get(optimizer.get("name"))
    if (
        extra is None
        or not _only(optimizer, (*_OPTIMIZER_COMMON, *extra))
        or not isinstance(optimizer.get("learning_rate"), int | float)  # not a schedule
        or loss.get("name") not in _LOSSES
        or not _only(loss, _LOSS_FIELDS)
        or not set(compile_["metrics"]) <= _METRICS
        or not _only(compile_, ("optimizer", "loss", "metrics"))
    ):
        return None
    return {
        "version": KEY_VERSION,
        "input_dim": model["input_dim"],
        "layers": layers,
        "loss": {k: v for k, v in loss.items() if k in _LOSS_FIELDS},
        "metrics": list(compile_["metrics"]),
        "optimizer": optimizer["name"],
        "batch_size": fit["batch_size"],
    }


def compatibility_key(spec: Mapping[str, Any]) -> str | None:
    """A stable hash of what members of one pack share (see the module docstring); None
    when the spec cannot be packed. Two normalized specs with equal keys may share a pack."""
    shared = structure(spec)
    if shared is None:
        return None
    blob = json.dumps(shared, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:32]
