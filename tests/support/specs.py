"""Job specs as a client sends them (raw, before normalization): one factory
and the few shapes the suite and the benchmarks train again and again."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def dense(units: int, activation: str | None = None) -> dict[str, Any]:
    """A dense layer (linear without ``activation``)."""
    layer: dict[str, Any] = {"type": "dense", "units": units}
    if activation is not None:
        layer["activation"] = activation
    return layer


def spec_factory(
    *,
    input_dim: int = 4,
    hidden: Sequence[int] = (8,),
    classes: int = 3,
    layers: list[dict[str, Any]] | None = None,
    compile: Mapping[str, Any] | None = None,
    fit: Mapping[str, Any] | None = None,
    **top: Any,
) -> dict[str, Any]:
    """A full, valid spec: a softmax classifier (``hidden`` relu layers, then
    ``classes`` outputs) on the ``iris`` built-in, Adam and sparse categorical
    cross-entropy with accuracy, 3 epochs in batches of 16, seed 0.

    ``layers`` replaces the model's layers; ``compile`` and ``fit`` are merged
    over their defaults; any other keyword sets a top-level key (``seed``,
    ``dataset_id``, ``name``, ``test_dataset_id``…), and ``None`` removes one."""
    if layers is None:
        layers = [*(dense(units, "relu") for units in hidden), dense(classes, "softmax")]
    spec: dict[str, Any] = {
        "model": {"input_dim": input_dim, "layers": layers},
        "compile": {
            "optimizer": "adam",
            "loss": "sparse_categorical_crossentropy",
            "metrics": ["accuracy"],
            **(compile or {}),
        },
        "fit": {"epochs": 3, "batch_size": 16, **(fit or {})},
        "seed": 0,
        "dataset_id": "iris",
    }
    spec.update(top)
    return {key: value for key, value in spec.items() if value is not None}


def iris_spec(seed: int = 7, epochs: int = 3, batch_size: int = 16, **fit: Any) -> dict[str, Any]:
    """The worker tests' job on iris: dense 16 relu, dropout 0.1, softmax 3,
    inputs normalized. ``batch_size`` 1 makes 150 steps an epoch."""
    return spec_factory(
        layers=[dense(16, "relu"), {"type": "dropout", "rate": 0.1}, dense(3, "softmax")],
        fit={"epochs": epochs, "batch_size": batch_size, "normalize": True, **fit},
        seed=seed,
    )


def digits_spec(*, fit: Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """A small model on the ``digits`` built-in (64 → 64 relu → 10 softmax,
    12 epochs of 32 with a tenth held out, normalized): a few seconds on a CPU.
    Keywords as :func:`spec_factory`'s; ``fit`` is merged over this one's."""
    digits_fit = {"epochs": 12, "batch_size": 32, "validation_split": 0.1, "normalize": True}
    return spec_factory(
        **{
            "input_dim": 64,
            "hidden": (64,),
            "classes": 10,
            "dataset_id": "digits",
            "name": "digits-mlp",
            **overrides,
        },
        fit={**digits_fit, **(fit or {})},
    )


DIGITS_SPEC = digits_spec()
"""``digits_spec()`` for the tests that read its values (copy it before changing it)."""


# A normalized job spec as the service stored it before the contract gained input_shape,
# constraints, label smoothing, the clips, schedules and more callbacks.
STORED_BEFORE: dict[str, Any] = {
    "model": {
        "input_dim": 4,
        "layers": [
            {
                "type": "dense",
                "units": 8,
                "activation": "relu",
                "use_bias": True,
                "kernel_initializer": {"name": "glorot_uniform"},
                "bias_initializer": {"name": "zeros"},
                "kernel_regularizer": None,
            },
            {"type": "dropout", "rate": 0.2},
            {
                "type": "dense",
                "units": 3,
                "activation": "softmax",
                "use_bias": True,
                "kernel_initializer": {"name": "glorot_uniform"},
                "bias_initializer": {"name": "zeros"},
                "kernel_regularizer": None,
            },
        ],
    },
    "compile": {
        "optimizer": {
            "name": "adam",
            "learning_rate": 0.001,
            "beta_1": 0.9,
            "beta_2": 0.999,
            "epsilon": 1e-07,
            "amsgrad": False,
            "weight_decay": 0.0,
        },
        "loss": {"name": "sparse_categorical_crossentropy", "from_logits": False},
        "metrics": ["accuracy"],
    },
    "fit": {
        "epochs": 2,
        "batch_size": 16,
        "validation_split": 0.25,
        "shuffle": True,
        "early_stopping": {
            "monitor": "val_loss",
            "min_delta": 0.0,
            "patience": 0,
            "mode": "auto",
            "restore_best_weights": False,
        },
        "normalize": False,
    },
    "seed": 0,
    "name": None,
    "priority": 0,
    "max_attempts": 3,
    "dataset_id": "builtin-iris",
    "validation_dataset_id": None,
    "test_dataset_id": None,
}
