"""Keras' regularization layers: the training-only noise (Dropout, GaussianNoise,
GaussianDropout, AlphaDropout), the identity at inference; and ActivityRegularization.

The noise is drawn from the trainer's noise generator (`ctx.generator`, the job's seed
stream SEED_STREAM_DROPOUT on the training device), which checkpoints carry, so a run
is deterministic and resumes bit for bit on the CPU. Each forward keeps what its
backward multiplies by (a mask, the noise); the noise is independent of x.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from torch import Tensor

from fitq.worker.engine.config import Checked, read, real
from fitq.worker.engine.layer_base import Context, Layer, where

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

# ------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class DropoutConfig(Checked):
    rate: Annotated[float, real(ge=0, lt=1)]  # the kept units are scaled by 1/(1 − rate)


@dataclass(frozen=True)
class GaussianNoiseConfig(Checked):
    stddev: Annotated[float, real(ge=0)]


@dataclass(frozen=True)
class GaussianDropoutConfig(Checked):
    rate: Annotated[float, real(ge=0, lt=1)]  # the noise's std is √(rate / (1 − rate))


@dataclass(frozen=True)
class AlphaDropoutConfig(Checked):
    rate: Annotated[float, real(ge=0, lt=1)]  # a = ((1 − rate)(1 + rate·α′²))^−½


@dataclass(frozen=True)
class ActivityRegularizationConfig(Checked):
    l1: Annotated[float, real(ge=0)]
    l2: Annotated[float, real(ge=0)]


# ------------------------------------------------------------------------- layers


class _Noise(Layer):
    """y = x·m + c with m (and c) drawn per training forward; dX = dY·m."""

    random = True

    def __init__(self, index: int, in_dim: int):
        super().__init__(index, in_dim)
        self._mask: Tensor | None = None

    def _draw(self, like: Tensor, ctx: Context) -> Tensor:
        """A [n, in] buffer to draw this step's noise into."""
        buf = self._buffer(ctx, "noise", like, self.in_dim)
        return torch.empty_like(like) if buf is None else buf

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        if not need_dx:
            return None
        return dy if self._mask is None else dy.mul_(self._mask)


class Dropout(_Noise):
    """Inverted dropout: training keeps each unit with probability 1 − rate and scales
    it by 1/(1 − rate); inference is the identity."""

    kind = "dropout"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any]):
        super().__init__(index, in_dim)
        self.rate = float(read(DropoutConfig, cfg, where(index), tag="type").rate)
        self.random = self.rate > 0

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        if not ctx.training or self.rate == 0:
            self._mask = None
            return x
        mask = self._draw(x, ctx)
        keep = 1.0 - self.rate
        self._mask = mask.bernoulli_(keep, generator=ctx.generator).mul_(1.0 / keep)
        return torch.mul(x, mask, out=self._buffer(ctx, "y", x, self.in_dim))


class GaussianNoise(_Noise):
    """Keras' GaussianNoise: training adds N(0, stddev²) noise; dX = dY."""

    kind = "gaussian_noise"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any]):
        super().__init__(index, in_dim)
        self.stddev = float(read(GaussianNoiseConfig, cfg, where(index), tag="type").stddev)
        self.random = self.stddev > 0

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        if not ctx.training or self.stddev == 0:
            return x
        noise = self._draw(x, ctx).normal_(0.0, self.stddev, generator=ctx.generator)
        return torch.add(x, noise, out=self._buffer(ctx, "y", x, self.in_dim))


class GaussianDropout(_Noise):
    """Keras' GaussianDropout: training multiplies by N(1, rate/(1 − rate)) noise."""

    kind = "gaussian_dropout"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any]):
        super().__init__(index, in_dim)
        self.rate = float(read(GaussianDropoutConfig, cfg, where(index), tag="type").rate)
        self.random = self.rate > 0

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        if not ctx.training or self.rate == 0:
            self._mask = None
            return x
        stddev = math.sqrt(self.rate / (1.0 - self.rate))
        self._mask = self._draw(x, ctx).normal_(1.0, stddev, generator=ctx.generator)
        return torch.mul(x, self._mask, out=self._buffer(ctx, "y", x, self.in_dim))


class AlphaDropout(_Noise):
    """Keras' AlphaDropout, which keeps SELU's mean and variance: with α′ = −α·scale
    (SELU's) and keep ~ [U(0, 1) ≥ rate],

        y = a·(x·keep + α′·(1 − keep)) + b,   a = ((1 − rate)(1 + rate·α′²))^−½,
        b = −a·α′·rate;                       dX = dY·a·keep.
    """

    kind = "alpha_dropout"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any]):
        super().__init__(index, in_dim)
        self.rate = rate = float(read(AlphaDropoutConfig, cfg, where(index), tag="type").rate)
        self.random = rate > 0
        alpha_p = -SELU_ALPHA * SELU_SCALE
        self.alpha_p = alpha_p
        self.a = ((1.0 - rate) * (1.0 + rate * alpha_p**2)) ** -0.5
        self.b = -self.a * alpha_p * rate

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        if not ctx.training or self.rate == 0:
            self._mask = None
            return x
        keep = self._draw(x, ctx).uniform_(0.0, 1.0, generator=ctx.generator).ge_(self.rate)
        self._mask = keep.mul_(self.a)  # a·keep: the gradient's factor
        y = torch.mul(x, self._mask, out=self._buffer(ctx, "y", x, self.in_dim))
        # a·(x·keep + α′·(1 − keep)) + b  =  x·(a·keep) − α′·(a·keep) + a·α′ + b
        return y.add_(self._mask, alpha=-self.alpha_p).add_(self.a * self.alpha_p + self.b)


class ActivityRegularization(Layer):
    """The identity, adding l1·Σ|x| + l2·Σx² to the loss. Keras 3 divides it by the
    batch's rows: each row adds its own term to the batch's mean loss, in training and
    in evaluation alike. dX = dY + (l1·sign(x) + 2·l2·x)/n."""

    kind = "activity_regularization"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any]):
        super().__init__(index, in_dim)
        c = read(ActivityRegularizationConfig, cfg, where(index), tag="type")
        self.l1, self.l2 = float(c.l1), float(c.l2)
        self._x: Tensor | None = None

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        self._x = x
        return x

    def activity(self) -> Tensor | None:
        if not (self.l1 or self.l2) or self._x is None:
            return None
        x = self._x
        total = torch.zeros((), dtype=x.dtype, device=x.device)
        if self.l1:
            total = total + self.l1 * x.abs().sum()
        if self.l2:
            total = total + self.l2 * x.square().sum()
        return total

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        if not need_dx:
            return None
        x, n = self._x, dy.shape[0]
        assert x is not None
        if self.l1:
            dy = dy.add_(torch.sign(x), alpha=self.l1 / n)
        if self.l2:
            dy = dy.add_(x, alpha=2.0 * self.l2 / n)
        return dy
