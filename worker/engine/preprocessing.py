"""Keras' reshaping and preprocessing layers on flat rows: Flatten, Rescaling and
Normalization (with its mean and variance given). None has weights; each is fixed by
its spec, and its backward is the forward's constant factor."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from torch import Tensor

from fitq.worker.engine.config import FLOAT32_MAX, Checked, read, real
from fitq.worker.engine.errors import ConfigError
from fitq.worker.engine.layer_base import Context, Layer, where

EPSILON = 1e-7  # Keras' backend epsilon: Normalization divides by at least this

# ------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class FlattenConfig(Checked):
    """No parameters: rows are stored flat, so Flatten is the identity on them."""


@dataclass(frozen=True)
class RescalingConfig(Checked):
    scale: Annotated[float, real()]
    offset: Annotated[float, real()]


@dataclass(frozen=True)
class NormalizationConfig(Checked):
    """One mean and one variance per feature (≥ 0, within float32, finite)."""

    mean: list[float]
    variance: list[float]
    invert: bool

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, low in (("mean", -FLOAT32_MAX), ("variance", 0.0)):
            values = getattr(self, key)
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{key} must be a non-empty list of numbers, got {values!r}")
            for v in values:
                if (
                    isinstance(v, bool)
                    or not isinstance(v, int | float)
                    or not (low <= v <= FLOAT32_MAX)
                ):
                    raise ConfigError(
                        f"each {key} must be a number >= {low:g} and <= {FLOAT32_MAX:g}, got {v!r}"
                    )
        if len(self.mean) != len(self.variance):
            raise ConfigError(
                f"mean and variance must have the same length ({len(self.mean)} ≠ "
                f"{len(self.variance)})"
            )


# ------------------------------------------------------------------------- layers


class Flatten(Layer):
    kind = "flatten"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any]):
        super().__init__(index, in_dim)
        read(FlattenConfig, cfg, where(index), tag="type")

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        return x

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        return dy if need_dx else None


class Rescaling(Layer):
    """y = x·scale + offset; dX = dY·scale."""

    kind = "rescaling"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any]):
        super().__init__(index, in_dim)
        c = read(RescalingConfig, cfg, where(index), tag="type")
        self.scale, self.offset = float(c.scale), float(c.offset)

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        return (x * self.scale).add_(self.offset)

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        return dy.mul_(self.scale) if need_dx else None


class Normalization(Layer):
    """Keras' Normalization with mean and variance given:
    y = (x − mean) / d, or mean + x·d with `invert`, d = max(√variance, ε) per feature;
    dX = dY / d (dY·d). The statistics are the spec's, held as constants (not weights)."""

    kind = "normalization"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any]):
        super().__init__(index, in_dim)
        c = read(NormalizationConfig, cfg, where(index), tag="type")
        if len(c.mean) != in_dim:
            raise ConfigError(
                f"{where(index)}: mean and variance need one value per feature ({in_dim}), "
                f"got {len(c.mean)}"
            )
        self.invert = c.invert
        # float32 as Keras computes them, whatever the training dtype
        variance = torch.tensor(c.variance, dtype=torch.float32)
        self.mean = torch.tensor(c.mean, dtype=torch.float32)
        self.d = torch.sqrt(variance).clamp_(min=EPSILON)

    def to(self, device: torch.device, dtype: torch.dtype) -> None:
        super().to(device, dtype)
        self.mean, self.d = self.mean.to(device, dtype), self.d.to(device, dtype)

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        if self.invert:
            return torch.addcmul(self.mean, x, self.d)
        return (x - self.mean).div_(self.d)

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        if not need_dx:
            return None
        return dy.mul_(self.d) if self.invert else dy.div_(self.d)
