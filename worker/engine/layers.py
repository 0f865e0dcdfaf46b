"""Layers: `forward` stores what `backward` needs; `backward` sits right below it.

Shapes: x [n, in], y [n, out]. `forward(x, ctx)` returns y; `backward(dy, need_dx)`
fills the layer's gradient tensors (`grads`, parallel to `params`) and returns dX
(or None when no earlier layer needs it). backward may overwrite dy.

When `ctx.reuse` is true a layer writes its outputs into buffers it keeps per
batch size (allocated once, reused every step); the caller must be done with the
previous output of the same size before the next forward. Predictors pass
reuse=False so concurrent calls never share memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from torch import Tensor

from fitq.worker.engine import activations
from fitq.worker.engine.config import Checked, count, read, real
from fitq.worker.engine.errors import ConfigError
from fitq.worker.engine.initializers import initialize

# ------------------------------------------------------------------------- configs
# One per layer type: exactly the keys of a normalized `model.layers[i]` (besides "type").


@dataclass(frozen=True)
class DenseConfig(Checked):
    units: Annotated[int, count(ge=1)]
    activation: str
    use_bias: bool
    kernel_initializer: Mapping[str, Any]
    bias_initializer: Mapping[str, Any]
    kernel_regularizer: Mapping[str, Any] | None


@dataclass(frozen=True)
class RegularizerConfig(Checked):
    """Keras' L1L2 on a dense kernel: l1·Σ|W| + l2·ΣW² added to the loss."""

    l1: Annotated[float, real(ge=0)]
    l2: Annotated[float, real(ge=0)]


@dataclass(frozen=True)
class DropoutConfig(Checked):
    rate: Annotated[float, real(ge=0, lt=1)]  # the kept units are scaled by 1/(1 − rate)


@dataclass(frozen=True)
class ActivationConfig(Checked):
    activation: str


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


def _where(index: int) -> str:
    return f"model.layers.{index}"


@dataclass
class Context:
    training: bool
    reuse: bool = True
    generator: torch.Generator | None = None  # dropout's


class Layer:
    kind = ""

    def __init__(self, index: int, in_dim: int):
        self.index = index
        self.in_dim = in_dim
        self.out_dim = in_dim
        self.params: dict[str, Tensor] = {}  # trainable, export order
        self.grads: dict[str, Tensor] = {}
        self.buffers: dict[str, Tensor] = {}  # non-trainable state (exported too)
        self._ws: dict[tuple[str, int], Tensor] = {}

    def _buffer(self, ctx: Context, name: str, like: Tensor, cols: int) -> Tensor | None:
        if not ctx.reuse:
            return None
        key = (name, like.shape[0])
        buf = self._ws.get(key)
        if buf is None:
            buf = self._ws[key] = torch.empty(
                like.shape[0], cols, dtype=like.dtype, device=like.device
            )
        return buf

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        raise NotImplementedError

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        raise NotImplementedError

    def penalty(self) -> Tensor | None:
        """The regularization term this layer adds to the loss (None: none)."""
        return None

    def to(self, device: torch.device, dtype: torch.dtype) -> None:
        for d in (self.params, self.buffers):
            for k, t in d.items():
                d[k] = t.to(device=device, dtype=dtype)
        self.grads = {k: torch.zeros_like(t) for k, t in self.params.items()}
        self._ws.clear()


class Dense(Layer):
    """y = f(x·W + b), kernel W [in, units] (Keras' orientation), bias b [units]."""

    kind = "dense"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any], g: torch.Generator):
        super().__init__(index, in_dim)
        where = _where(index)
        c = read(DenseConfig, cfg, where, tag="type")
        self.out_dim = units = c.units
        self.activation = activations.get(c.activation, f"{where}.activation")
        self.params["kernel"] = initialize(
            c.kernel_initializer, (in_dim, units), g, f"{where}.kernel_initializer"
        )
        if c.use_bias:
            self.params["bias"] = initialize(
                c.bias_initializer, (units,), g, f"{where}.bias_initializer"
            )
        self.l1 = self.l2 = 0.0
        if c.kernel_regularizer is not None:
            reg = read(RegularizerConfig, c.kernel_regularizer, f"{where}.kernel_regularizer")
            self.l1, self.l2 = float(reg.l1), float(reg.l2)
        self.grads = {k: torch.zeros_like(t) for k, t in self.params.items()}
        self._x: Tensor | None = None
        self._wt: Tensor | None = None

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        w, b = self.params["kernel"], self.params.get("bias")
        z = self._buffer(ctx, "z", x, self.out_dim)
        # Z = X·W + b   [n, units]
        z = torch.addmm(b, x, w, out=z) if b is not None else torch.mm(x, w, out=z)
        y = self.activation.forward(z)  # in place over z where it can
        if ctx.training:
            if x is not self._x:  # buffers come back step after step: keep their transpose
                self._x, self._xt = x, x.t()
            self._z, self._y = z, y
        return y

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        w = self.params["kernel"]
        dz = self.activation.backward(dy, self._z, self._y)  # dZ = dY ⊙ f'(Z)  [n, units]
        torch.mm(self._xt, dz, out=self.grads["kernel"])  # dW = Xᵀ·dZ       [in, units]
        if "bias" in self.grads:
            torch.sum(dz, dim=0, out=self.grads["bias"])  # db = Σₙ dZ       [units]
        if self.l1:
            self.grads["kernel"].add_(torch.sign(w), alpha=self.l1)  # ∂(l1·Σ|W|) = l1·sign(W)
        if self.l2:
            self.grads["kernel"].add_(w, alpha=2.0 * self.l2)  # ∂(l2·ΣW²) = 2·l2·W
        if not need_dx:
            return None
        dx = self._ws.get(("dx", dz.shape[0]))
        if dx is None:
            assert self._x is not None
            dx = self._ws[("dx", dz.shape[0])] = torch.empty_like(self._x)
        if self._wt is None or self._wt._base is not w._base:  # a view of the kernel, kept
            self._wt = w.t()
        return torch.mm(dz, self._wt, out=dx)  # dX = dZ·Wᵀ       [n, in]

    def penalty(self) -> Tensor | None:
        if not (self.l1 or self.l2):
            return None
        w = self.params["kernel"]
        total = torch.zeros((), dtype=w.dtype, device=w.device)
        if self.l1:
            total = total + self.l1 * w.abs().sum()
        if self.l2:
            total = total + self.l2 * w.square().sum()
        return total


class Dropout(Layer):
    """Inverted dropout: training keeps each unit with probability 1 − rate and scales
    it by 1/(1 − rate); inference is the identity. The mask is drawn from the trainer's
    dropout generator."""

    kind = "dropout"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any]):
        super().__init__(index, in_dim)
        self.rate = float(read(DropoutConfig, cfg, _where(index), tag="type").rate)

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        if not ctx.training or self.rate == 0:
            self._mask = None
            return x
        mask = self._buffer(ctx, "mask", x, self.in_dim)
        mask = torch.empty_like(x) if mask is None else mask
        keep = 1.0 - self.rate
        mask.bernoulli_(keep, generator=ctx.generator).mul_(1.0 / keep)
        self._mask = mask
        return torch.mul(x, mask, out=self._buffer(ctx, "y", x, self.in_dim))

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        if not need_dx:
            return None
        return dy if self._mask is None else dy.mul_(self._mask)  # dX = dY ⊙ mask


class ActivationLayer(Layer):
    """A standalone activation; it never overwrites its input (an earlier layer may need it)."""

    kind = "activation"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any]):
        super().__init__(index, in_dim)
        c = read(ActivationConfig, cfg, _where(index), tag="type")
        self.activation = activations.get(c.activation, f"{_where(index)}.activation")

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        z = x.clone() if self.activation.in_place else x
        y = self.activation.forward(z)
        if ctx.training:
            self._x, self._y = x, y
        return y

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        return self.activation.backward(dy, self._x, self._y) if need_dx else None


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
        c = read(BatchNormalizationConfig, cfg, _where(index), tag="type")
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
        c = read(LayerNormalizationConfig, cfg, _where(index), tag="type")
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


CONFIGS: dict[str, type[Checked]] = {
    "dense": DenseConfig,
    "dropout": DropoutConfig,
    "activation": ActivationConfig,
    "batch_normalization": BatchNormalizationConfig,
    "layer_normalization": LayerNormalizationConfig,
}
"""Each layer type's config: the keys of its normalized spec (tests check them)."""


def build(index: int, in_dim: int, cfg: Mapping[str, Any], g: torch.Generator) -> Layer:
    """The layer a normalized `model.layers[index]` describes, on `in_dim` inputs."""
    kind = cfg.get("type") if isinstance(cfg, Mapping) else cfg
    if kind == "dense":
        return Dense(index, in_dim, cfg, g)
    if kind == "dropout":
        return Dropout(index, in_dim, cfg)
    if kind == "activation":
        return ActivationLayer(index, in_dim, cfg)
    if kind == "batch_normalization":
        return BatchNormalization(index, in_dim, cfg)
    if kind == "layer_normalization":
        return LayerNormalization(index, in_dim, cfg)
    raise ConfigError(f"{_where(index)}: unknown layer type {kind!r}")
