"""How much memory a job needs to train, estimated at submit from its normalized
spec and its datasets' shapes; above ``FITQ_MAX_TRAINING_BYTES`` it is a 422.

The parameter limit alone lets through a model whose activations do not fit
anywhere: on ``digits``, one 1M-unit dense layer and 998 activation layers
keep 998 × 32 × 1M floats (128 GB) for the backward pass of every step.

What the engine (``worker/engine``) holds, float32 throughout (4 bytes a
number), P the parameter count, S the optimizer's state slots per parameter
(0 for plain SGD, 1 for SGD with momentum and for Adagrad, 1–3 for RMSprop,
2–3 for Adam/AdamW)::

    parameters   (3 + S)·P·4      weights, gradients, slots, one work buffer
                 (+ P·4 for early stopping's best weights when it restores them)
    data         the training rows [n, f] and their targets on the device,
                 the validation and test rows likewise, the shuffled batch
                 [B, f], the epoch's permutation (8 bytes a row)
    activations  for each batch size the training loop sees (B, and the last
                 partial batch r = n_train mod B: each keeps its own buffers):
                   dense        z [b, units] and dX [b, in] (not the first one),
                                + y [b, units] unless the activation runs in place
                   dropout      mask and output [b, in]
                   activation   its output [b, in] (one batch size at a time)
                   others       two [b, in] (normalizations keep x̂ and the output)
    evaluation   the validation and test forward in chunks of E = min(8192, rows)
                 rows (and the remainder): each dense layer keeps z [E, units] per
                 chunk size
    transient    the backward's temporaries, 3·[B, widest layer]; the loss's,
                 3·[B, outputs]; the evaluation's, 2·[E, widest layer]; a
                 checkpoint as it is serialized, three times its tensors (each
                 copied to bytes, serialized, returned as bytes; measured):
                 3·((1 + S)·P·4 + the permutation)

The sum is compared with the limit. ``tests/quotas/test_training_budget.py``
checks the held part against the tensors a real ``Trainer`` holds at a step
boundary, model by model, and docs/api.md (Limits) states the formula.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fitq.service.datasets.shape import DataShape
from fitq.service.errors import InvalidSpec

FLOAT_BYTES = 4
INDEX_BYTES = 8
EVAL_CHUNK_ROWS = 8192
"""Rows per forward pass in evaluation (the engine's ``model.PREDICT_BATCH_ROWS``)."""
IN_PLACE_ACTIVATIONS = frozenset({"linear", "relu", "sigmoid", "tanh", "leaky_relu", "selu"})
"""Activations the engine computes over their input (``Activation.in_place``)."""
FUSED_OUTPUTS = frozenset(
    {
        ("sparse_categorical_crossentropy", "softmax"),
        ("categorical_crossentropy", "softmax"),
        ("binary_crossentropy", "sigmoid"),
    }
)
"""A final activation the loss takes over (``compiled.FUSABLE``): it then runs as ``linear``."""
TRAINABLE = frozenset({"dense", "batch_normalization", "layer_normalization", "prelu"})
"""Layer types with weights: the backward pass stops at the first of them."""
KEPT_PER_STEP = {"activation": 1, "dropout": 0}
"""[b, in] tensors a layer keeps for its backward, besides its per-batch-size buffers;
layer types not listed keep two (the normalizations: x̂ and the output)."""
BUFFERS_PER_SIZE = {"dropout": 2}
"""[b, in] buffers a layer keeps per batch size (dense: its own rule)."""
BACKWARD_TEMPORARIES = 3
CHECKPOINT_COPIES = 3
EVAL_TEMPORARIES = 2
LOSS_TEMPORARIES = 3


@dataclass(frozen=True)
class Estimate:
    """A job's training memory by part (bytes); ``total`` is what the limit bounds."""

    parameters: int
    data: int
    activations: int
    evaluation: int
    transient: int

    @property
    def held(self) -> int:
        """What is allocated at a step boundary (the transients come and go within a step)."""
        return self.parameters + self.data + self.activations + self.evaluation

    @property
    def total(self) -> int:
        return self.held + self.transient


def optimizer_slots(optimizer: Mapping[str, Any]) -> int:
    """State tensors the optimizer keeps per parameter tensor (the engine's ``*_slots``)."""
    name = optimizer["name"]
    if name == "sgd":
        return 1 if optimizer.get("momentum") else 0
    if name == "adagrad":
        return 1
    if name == "rmsprop":
        return 1 + bool(optimizer.get("centered")) + bool(optimizer.get("momentum"))
    if name in ("adam", "adamw"):
        return 2 + bool(optimizer.get("amsgrad"))
    return 3  # an optimizer this table does not know yet: Adam's worst case


def estimate(
    spec: Mapping[str, Any],
    parameters: int,
    train: DataShape,
    validation: DataShape | None = None,
    test: DataShape | None = None,
) -> Estimate:
    """The training memory of the normalized ``spec`` (``parameters`` weights)."""
    model, fit, loss = spec["model"], spec["fit"], spec["compile"]["loss"]["name"]
    layers: list[Mapping[str, Any]] = model["layers"]
    n, f = train.n_rows, train.n_features
    n_train = n if validation is not None else int(n * (1.0 - fit["validation_split"]))
    n_split = n - n_train  # Keras' split: the last rows, held beside the training rows
    batch = min(fit["batch_size"] or n_train, n_train)
    partial = n_train % batch
    sizes = [batch] + ([partial] if partial else [])
    widths = _widths(model["input_dim"], layers)
    outputs = widths[-1]
    slots = optimizer_slots(spec["compile"]["optimizer"])
    stopping = fit.get("early_stopping") or {}
    saved = 1 + slots + bool(stopping.get("restore_best_weights"))  # a checkpoint's P-sized
    copies = saved + 2  # and the gradients and the work buffer: P-sized tensors held

    def targets(rows: int) -> int:
        """Class indices as int64 [rows, 1]; anything else float32 [rows, outputs]."""
        if loss == "sparse_categorical_crossentropy":
            return rows * INDEX_BYTES
        return rows * outputs * FLOAT_BYTES

    data = n * f * FLOAT_BYTES + targets(n) + n_train * INDEX_BYTES
    if fit["shuffle"]:
        data += sum(sizes) * (f * FLOAT_BYTES + targets(1))
    evaluated = [n_split] if n_split else []
    for extra in (validation, test):
        if extra is not None:
            data += extra.n_rows * extra.n_features * FLOAT_BYTES + targets(extra.n_rows)
            evaluated.append(extra.n_rows)

    fused = (loss, _final_activation(layers)) in FUSED_OUTPUTS
    activations = 0
    first_trainable = next(i for i, layer in enumerate(layers) if layer["type"] in TRAINABLE)
    for i, layer in enumerate(layers):
        width_in, width_out = widths[i], widths[i + 1]
        kind = layer["type"]
        if kind == "dense":
            activation = "linear" if fused and i == len(layers) - 1 else layer["activation"]
            per_size = width_out + (width_in if i > first_trainable else 0)
            activations += sum(sizes) * per_size * FLOAT_BYTES
            if activation not in IN_PLACE_ACTIVATIONS:
                activations += batch * width_out * FLOAT_BYTES
            continue
        if kind == "dropout" and not layer.get("rate"):
            continue
        activations += sum(sizes) * BUFFERS_PER_SIZE.get(kind, 0) * width_in * FLOAT_BYTES
        activations += batch * KEPT_PER_STEP.get(kind, 2) * width_in * FLOAT_BYTES

    chunks = {min(EVAL_CHUNK_ROWS, rows) for rows in evaluated}
    chunks |= {rows % EVAL_CHUNK_ROWS for rows in evaluated if rows > EVAL_CHUNK_ROWS} - {0}
    dense = [w for layer, w in zip(layers, widths[1:], strict=True) if layer["type"] == "dense"]
    dense_outputs = sum(dense)
    evaluation = sum(rows * dense_outputs * FLOAT_BYTES for rows in chunks - set(sizes))

    transient = (
        BACKWARD_TEMPORARIES * batch * max(widths) * FLOAT_BYTES
        + EVAL_TEMPORARIES * max(chunks, default=0) * max(widths) * FLOAT_BYTES
        + LOSS_TEMPORARIES * batch * outputs * FLOAT_BYTES
        + CHECKPOINT_COPIES * (saved * parameters * FLOAT_BYTES + n_train * INDEX_BYTES)
    )
    return Estimate(
        parameters=copies * parameters * FLOAT_BYTES,
        data=data,
        activations=activations,
        evaluation=evaluation,
        transient=transient,
    )


def _widths(input_dim: int, layers: list[Mapping[str, Any]]) -> list[int]:
    """The width before the first layer and after each one."""
    widths = [input_dim]
    for layer in layers:
        widths.append(layer["units"] if layer["type"] == "dense" else widths[-1])
    return widths


def _final_activation(layers: list[Mapping[str, Any]]) -> str | None:
    last = layers[-1]
    if last["type"] in ("dense", "activation"):
        return str(last["activation"])
    return None


def check(estimated: Estimate, limit: int, *, model_key: str = "model") -> None:
    """422 naming the estimate, its largest part and the limit when it is over."""
    if estimated.total <= limit:
        return
    parts = {
        "parameters, gradients and optimizer state": estimated.parameters,
        "activations kept for the backward pass": estimated.activations,
        "data on the device": estimated.data,
        "evaluation buffers": estimated.evaluation,
        "temporaries and checkpoints": estimated.transient,
    }
    largest = max(parts, key=parts.__getitem__)
    raise InvalidSpec(
        f"training this job needs about {_size(estimated.total)} "
        f"({estimated.total:,} bytes; {largest}: {_size(parts[largest])}), over the limit of "
        f"{_size(limit)} ({limit:,} bytes, FITQ_MAX_TRAINING_BYTES); use fewer or narrower "
        "layers, or a smaller batch_size",
        loc=["body", model_key, "layers"],
    )


def _size(n: int) -> str:
    """Bytes in binary units, three significant figures (``128 GiB``, ``1.50 MiB``)."""
    value, unit = float(n), "bytes"
    for name in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024:
            break
        value, unit = value / 1024, name
    if unit == "bytes":
        return f"{n} bytes"
    return f"{value:.3g} {unit}"
