"""Spec factories and data for the engine tests (plain functions, no fixtures needed).

The engine takes only the normalized spec (docs/spec-contract.md), so a test writes the
short form a user would and `normalized` fills it in exactly as the service does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from pydantic import TypeAdapter

from fitq.service.spec import CompileSpec, EarlyStopping, FitSpec, ModelSpec
from fitq.service.spec.callbacks import ReduceLROnPlateau
from fitq.service.spec.initializers import Initializer
from fitq.service.spec.layers import Layer
from fitq.service.spec.losses import Loss
from fitq.service.spec.optimizers import Optimizer

cuda = pytest.mark.cuda
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TIMING_KEYS = ("seconds", "samples_per_second")


_PARTS: dict[str, Any] = {
    "model": ModelSpec,
    "compile": CompileSpec,
    "fit": FitSpec,
    "layer": Layer,
    "optimizer": Optimizer,
    "loss": Loss,
    "initializer": Initializer,
    "early_stopping": EarlyStopping,
    "reduce_lr_on_plateau": ReduceLROnPlateau,
}


def normalized(part: str, value: Any) -> Any:
    """`value` as the service normalizes that part of a spec: every default filled, every
    alias resolved (only the part's own rules apply, not the whole job's)."""
    adapter: TypeAdapter[Any] = TypeAdapter(_PARTS[part])
    return adapter.dump_python(adapter.validate_python(value), mode="json")


def dense(units: int, activation: str = "linear", **kw: Any) -> dict[str, Any]:
    return {"type": "dense", "units": units, "activation": activation, **kw}


def spec(
    layers: list[dict[str, Any]] | None = None,
    *,
    input_dim: int = 8,
    optimizer: Any = "adam",
    loss: Any = "sparse_categorical_crossentropy",
    metrics: list[str] | None = None,
    seed: int = 0,
    **fit: Any,
) -> dict[str, Any]:
    """The normalized model, compile, fit and seed for Trainer(**spec(...))."""
    if layers is None:
        layers = [dense(16, "relu"), {"type": "dropout", "rate": 0.2}, dense(3, "softmax")]
    compile_ = {
        "optimizer": optimizer,
        "loss": loss,
        "metrics": ["accuracy"] if metrics is None else metrics,
    }
    return {
        "model": normalized("model", {"input_dim": input_dim, "layers": layers}),
        "compile": normalized("compile", compile_),
        "fit": normalized("fit", {"epochs": 3, "batch_size": 16, **fit}),
        "seed": seed,
    }


def blobs(n: int = 150, features: int = 8, classes: int = 3, seed: int = 0):
    """Separable-ish clusters: x float32 [n, features], y int64 [n]."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2.0, size=(classes, features))
    y = rng.integers(0, classes, size=n)
    x = centers[y] + rng.normal(0, 1.0, size=(n, features))
    return x.astype(np.float32), y.astype(np.int64)


def without_timing(history: dict[str, list[float]]) -> dict[str, list[float]]:
    return {k: v for k, v in history.items() if k not in TIMING_KEYS}


def weights(trainer) -> dict[str, torch.Tensor]:
    return {k: t.detach().cpu().clone() for k, t in trainer.model.named_tensors().items()}


def assert_weights_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"
