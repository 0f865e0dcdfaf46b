"""Which jobs may train in one pack: `compatibility_key(spec)`.

Members of a pack share one computation, so they share what fixes its shapes and its
kernels: `input_dim`, each layer's type and the fields that shape it (dense units,
activation, use_bias; an activation layer's function; layer normalization's center
and scale), the loss (name, from_logits, delta), the metrics, the optimizer's name and
`batch_size`. Everything else may differ per member: seed, initializers, regularizer
and dropout rates, layer-normalization epsilon, every optimizer hyperparameter
(nesterov, amsgrad and centered included), epochs, validation, early stopping,
normalize, shuffle, and the dataset (the same `input_dim`, any number of rows).

`batch_normalization` is not packed (the key is None: the job trains solo): its batch
statistics mix the rows of a batch, and a member's short last batch is padded in a
pack, so padding would enter its statistics.

The device is not part of the key: a worker packs only the jobs it claimed for its
own device.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

KEY_VERSION = 1  # bump when what the key covers changes: old keys then match nothing

_SHAPING_FIELDS = {
    "dense": ("units", "activation", "use_bias"),
    "dropout": (),
    "activation": ("activation",),
    "layer_normalization": ("center", "scale"),
}


def structure(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a pack's members share, as plain JSON (None: this spec trains solo). `spec`
    is normalized (docs/spec-contract.md): every key present, every name canonical."""
    layers = []
    for layer in spec["model"]["layers"]:
        kind = layer["type"]
        if kind not in _SHAPING_FIELDS:
            return None
        layers.append({"type": kind, **{f: layer[f] for f in _SHAPING_FIELDS[kind]}})
    compile_ = spec["compile"]
    return {
        "version": KEY_VERSION,
        "input_dim": spec["model"]["input_dim"],
        "layers": layers,
        "loss": dict(compile_["loss"]),
        "metrics": list(compile_["metrics"]),
        "optimizer": compile_["optimizer"]["name"],
        "batch_size": spec["fit"]["batch_size"],
    }


def compatibility_key(spec: Mapping[str, Any]) -> str | None:
    """A stable hash of what members of one pack share (see the module docstring); None
    when the spec cannot be packed. Two normalized specs with equal keys may share a pack."""
    shared = structure(spec)
    if shared is None:
        return None
    blob = json.dumps(shared, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:32]
