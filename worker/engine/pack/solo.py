"""What a member borrows from its solo run, in one place: the pack calls the solo
engine's own functions for everything that is not the packed step itself.

- the fused loss, the metrics and the fused final activation: a host `Trainer` of the
  pack's structure (one per pack: its members share them);
- the initial weights: a solo `Model` built from the member's seed;
- the fit config, targets, normalization statistics, seed streams and checkpoint
  fingerprint: `inputs`, `model` and `checkpoint`'s functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from fitq.worker.engine.checkpoint import Checkpoint
from fitq.worker.engine.checkpoint import fingerprint as _fingerprint
from fitq.worker.engine.config import read
from fitq.worker.engine.inputs import FitConfig, normalization, normalized, targets
from fitq.worker.engine.model import Model, dropout_generator, shuffle_generator
from fitq.worker.engine.trainer import NONFINITE_CHECK_STEPS, Trainer

__all__ = [
    "NONFINITE_CHECK_STEPS",
    "Checkpoint",
    "FitConfig",
    "Trainer",
    "dropout_generator",
    "fingerprint",
    "fit_config",
    "host",
    "initial_weights",
    "normalization",
    "normalized",
    "shuffle_generator",
    "targets",
]


def host(spec: Mapping[str, Any]) -> Trainer:
    """A solo trainer of `spec` on the CPU: the pack reads its loss (fused as the solo run
    fuses it), metrics and fused activation. Its structure is the pack's, so one host
    serves every member."""
    return Trainer(
        spec["model"], spec["compile"], spec["fit"], spec["seed"], "cpu", cuda_graph=False
    )


def fit_config(fit: Mapping[str, Any]) -> FitConfig:
    """A normalized `spec["fit"]`, read as the solo trainer reads it."""
    return read(FitConfig, fit, "fit")


def initial_weights(model_cfg: Mapping[str, Any], seed: int) -> dict[str, Tensor]:
    """The solo run's initial weights by exported name (float32, CPU)."""
    return Model(model_cfg, seed, "cpu", torch.float32).named_tensors()


def fingerprint(spec: Mapping[str, Any]) -> str:
    """The hash a checkpoint carries of the run (spec and seed) it belongs to."""
    return _fingerprint(spec["model"], spec["compile"], spec["fit"], spec["seed"])
