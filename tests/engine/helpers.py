"""Spec factories and data for the engine tests (plain functions, no fixtures needed)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

cuda = pytest.mark.cuda
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TIMING_KEYS = ("seconds", "samples_per_second")


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
    """A normalized spec (docs/spec-contract.md) for Trainer(**spec(...))."""
    if layers is None:
        layers = [dense(16, "relu"), {"type": "dropout", "rate": 0.2}, dense(3, "softmax")]
    fit_cfg = {
        "epochs": 3,
        "batch_size": 16,
        "validation_split": 0.0,
        "shuffle": True,
        "early_stopping": None,
        "normalize": False,
    }
    fit_cfg.update(fit)
    return {
        "model": {"input_dim": input_dim, "layers": layers},
        "compile": {
            "optimizer": optimizer,
            "loss": loss if isinstance(loss, dict) else {"name": loss},
            "metrics": ["accuracy"] if metrics is None else metrics,
        },
        "fit": fit_cfg,
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
