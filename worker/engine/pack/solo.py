"""What a member borrows from its solo run, in one place.

The solo trainer defines a member's math. The pack takes from it, by calling it:
the initial weights (a solo `Model` built from the member's seed), the fused loss and
the metrics (a host `Trainer` of the pack's structure), the targets' preparation
(`Trainer._targets`), the fit config. A few short rules have no function of their own in
the solo engine yet, so they are restated here, each marked RESTATED with where it
lives; tests/engine/test_pack_checkpoint.py proves the copies agree (a solo trainer
resumes from a member's checkpoint and the other way round, and a member's exported
model predicts as the pack does).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fitq.worker.engine.config import read
from fitq.worker.engine.model import (
    SEED_STREAM_DROPOUT,
    SEED_STREAM_SHUFFLE,
    Model,
    derive_seed,
)
from fitq.worker.engine.trainer import FitConfig, Trainer

__all__ = [
    "FitConfig",
    "Trainer",
    "dropout_generator",
    "fit_config",
    "fingerprint",
    "host",
    "initial_weights",
    "normalization",
    "shuffle_generator",
    "targets",
]


def host(spec: Mapping[str, Any]) -> Trainer:
    """A solo trainer of `spec` on the CPU: the pack reads its loss (fused as the solo run
    fuses it), metrics and fused activation, and prepares targets with it. Its structure
    is the pack's, so one host serves every member."""
    return Trainer(
        spec["model"], spec["compile"], spec["fit"], spec["seed"], "cpu", cuda_graph=False
    )


def fit_config(fit: Mapping[str, Any]) -> FitConfig:
    """A normalized `spec["fit"]`, read as the solo trainer reads it."""
    return read(FitConfig, fit, "fit")


def targets(host: Trainer, y: Any, n: int, what: str) -> Tensor:
    """y as the solo run holds it (class indices [n, 1] int64, or floats [n, k]), on the
    CPU, validated (shape, finiteness, label range) with the solo run's messages."""
    return host._targets(y, n, what)


def initial_weights(model_cfg: Mapping[str, Any], seed: int) -> dict[str, Tensor]:
    """The solo run's initial weights by exported name (float32, CPU)."""
    return Model(model_cfg, seed, "cpu", torch.float32).named_tensors()


def fingerprint(spec: Mapping[str, Any]) -> str:
    """RESTATED from `Trainer._fingerprint`: the hash a checkpoint carries of the spec
    and seed it belongs to."""
    run = {
        "model": spec["model"],
        "compile": spec["compile"],
        "fit": spec["fit"],
        "seed": int(spec["seed"]),
    }
    return hashlib.sha256(json.dumps(run, sort_keys=True, default=str).encode()).hexdigest()


def normalization(rows: np.ndarray) -> tuple[Tensor, Tensor]:
    """RESTATED from `Trainer._prepare`: fit.normalize's mean and population std of the
    training rows, computed in float64, std 0 → 1, kept as float32."""
    wide = rows.astype(np.float64)
    mean, std = wide.mean(axis=0), wide.std(axis=0)
    std[std == 0] = 1.0
    return torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(std.astype(np.float32))


def shuffle_generator(seed: int) -> torch.Generator:
    """RESTATED from `Trainer.__init__`: the CPU generator of the epoch permutations."""
    return torch.Generator().manual_seed(derive_seed(seed, SEED_STREAM_SHUFFLE))


def dropout_generator(seed: int, device: torch.device) -> torch.Generator:
    """RESTATED from `Trainer.__init__`: the dropout masks' generator, on the device."""
    return torch.Generator(device).manual_seed(derive_seed(seed, SEED_STREAM_DROPOUT))
