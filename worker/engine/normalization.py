"""Batch and layer normalization over the feature axis (Keras' BatchNormalization and
LayerNormalization): y = γ·x̂ + β, trained γ and β, their backward below the forward."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from torch import Tensor

from fitq.worker.engine.config import Checked, read, real
from fitq.worker.engine.layer_base import Context, Layer, where

# ------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class BatchNormalizationConfig(Checked):
    momentum: Annotated[float, real(ge=0, le=1)]
    epsilon: Annotated[float, real(gt=0)]  # r = 1/√(σ² + ε) is finite for a constant feature
    center: bool
    scale: bool


@dataclass(frozen=True)
class LayerNormalizationConfig(Checked):
    epsilon: Annotated[float, real(gt=0)]
    center: bool
    scale: bool


class _Normalization(Layer):
    """Shared by batch and layer normalization: y = γ·x̂ + β, x̂ = (x − μ)·r, r = 1/√(σ² + ε).

    backward, with ĝ = dY·γ and means over the normalized axis (N its length):
        dγ = Σₙ dY·x̂,  dβ = Σₙ dY,  dX = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))
    """

    _xhat: Tensor  # x̂ of the last training forward
    _r: Tensor  # r = 1/√(σ² + ε)

    def __init__(
        self, index: int, in_dim: int, c: BatchNormalizationConfig | LayerNormalizationConfig
    ):
        super().__init__(index, in_dim)
        self.epsilon = float(c.epsilon)
        if c.scale:
            self.params["gamma"] = torch.ones(in_dim)
        if c.center:
            self.params["beta"] = torch.zeros(in_dim)
        self.grads = {k: torch.zeros_like(t) for k, t in self.params.items()}

    def _affine(self, xhat: Tensor) -> Tensor:
        y = xhat * self.params["gamma"] if "gamma" in self.params else xhat.clone()
        if "beta" in self.params:
            y.add_(self.params["beta"])
        return y

    def _backward(self, dy: Tensor, axis: int, need_dx: bool) -> Tensor | None:
        xhat, r = self._xhat, self._r
        if "gamma" in self.grads:
            torch.sum(dy * xhat, dim=0, out=self.grads["gamma"])
        if "beta" in self.grads:
            torch.sum(dy, dim=0, out=self.grads["beta"])
        if not need_dx:
            return None
        gh = dy * self.params["gamma"] if "gamma" in self.params else dy
        mean_g = gh.mean(dim=axis, keepdim=True)
        mean_gx = (gh * xhat).mean(dim=axis, keepdim=True)
        return (gh - mean_g - xhat * mean_gx).mul_(r)


class BatchNormalization(_Normalization):
    """Keras' BatchNormalization over the feature axis. Training normalizes with the
    batch's mean and (biased) variance and moves the moving statistics as Keras does:
    moving ← moving·momentum + batch·(1 − momentum); inference uses the moving ones."""

    kind = "batch_normalization"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any]):
        c = read(BatchNormalizationConfig, cfg, where(index), tag="type")
        super().__init__(index, in_dim, c)
        self.momentum = float(c.momentum)
        self.buffers["moving_mean"] = torch.zeros(in_dim)
        self.buffers["moving_variance"] = torch.ones(in_dim)

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        if not ctx.training:
            r = torch.rsqrt(self.buffers["moving_variance"] + self.epsilon)
            return self._affine((x - self.buffers["moving_mean"]) * r)
        var, mean = torch.var_mean(x, dim=0, correction=0)
        m = self.momentum
        self.buffers["moving_mean"].mul_(m).add_(mean, alpha=1 - m)
        self.buffers["moving_variance"].mul_(m).add_(var, alpha=1 - m)
        self._r = torch.rsqrt(var + self.epsilon)  # [in]
        self._xhat = (x - mean).mul_(self._r)  # [n, in]
        return self._affine(self._xhat)

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        return self._backward(dy, 0, need_dx)


class LayerNormalization(_Normalization):
    """Keras' LayerNormalization over the feature axis of each sample."""

    kind = "layer_normalization"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any]):
        c = read(LayerNormalizationConfig, cfg, where(index), tag="type")
        super().__init__(index, in_dim, c)

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        var, mean = torch.var_mean(x, dim=1, correction=0, keepdim=True)
        r = torch.rsqrt(var + self.epsilon)  # [n, 1]
        xhat = (x - mean).mul_(r)
        if ctx.training:
            self._xhat, self._r = xhat, r
        return self._affine(xhat)

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        return self._backward(dy, 1, need_dx)
