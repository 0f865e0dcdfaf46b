"""Layers: `forward` stores what `backward` needs; `backward` sits right below it.

This module holds the dense layer and the registry of every layer type (`CONFIGS`,
`build`); the others live with their kind: `activation_layers` (activation, relu,
leaky_relu, elu, prelu), `normalization` (batch and layer normalization),
`regularization` (dropout and the noise layers, activity regularization) and
`preprocessing` (flatten, rescaling, normalization). `layer_base` has what they share:
`Layer` and the call `Context` (shapes, buffers, the backward's contract).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from torch import Tensor

from fitq.worker.engine import activations, constraints
from fitq.worker.engine.activation_layers import (
    ActivationConfig,
    ActivationLayer,
    ELUConfig,
    ELULayer,
    LeakyReLUConfig,
    LeakyReLULayer,
    PReLU,
    PReLUConfig,
    ReLUConfig,
    ReLULayer,
)
from fitq.worker.engine.config import Checked, count, read, real
from fitq.worker.engine.errors import ConfigError
from fitq.worker.engine.initializers import initialize
from fitq.worker.engine.layer_base import Context, Layer, where
from fitq.worker.engine.normalization import (
    BatchNormalization,
    BatchNormalizationConfig,
    LayerNormalization,
    LayerNormalizationConfig,
)
from fitq.worker.engine.preprocessing import (
    Flatten,
    FlattenConfig,
    Normalization,
    NormalizationConfig,
    Rescaling,
    RescalingConfig,
)
from fitq.worker.engine.regularization import (
    ActivityRegularization,
    ActivityRegularizationConfig,
    AlphaDropout,
    AlphaDropoutConfig,
    Dropout,
    DropoutConfig,
    GaussianDropout,
    GaussianDropoutConfig,
    GaussianNoise,
    GaussianNoiseConfig,
)

__all__ = ["ActivationLayer", "Context", "Dense", "Layer", "build"]

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
    kernel_constraint: Mapping[str, Any] | None
    bias_constraint: Mapping[str, Any] | None


@dataclass(frozen=True)
class RegularizerConfig(Checked):
    """Keras' L1L2 on a dense kernel: l1·Σ|W| + l2·ΣW² added to the loss."""

    l1: Annotated[float, real(ge=0)]
    l2: Annotated[float, real(ge=0)]


class Dense(Layer):
    """y = f(x·W + b), kernel W [in, units] (Keras' orientation), bias b [units]."""

    kind = "dense"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any], g: torch.Generator):
        super().__init__(index, in_dim)
        at = where(index)
        c = read(DenseConfig, cfg, at, tag="type")
        self.out_dim = units = c.units
        self.activation = activations.get(c.activation, f"{at}.activation")
        self.params["kernel"] = initialize(
            c.kernel_initializer, (in_dim, units), g, f"{at}.kernel_initializer"
        )
        if c.use_bias:
            self.params["bias"] = initialize(
                c.bias_initializer, (units,), g, f"{at}.bias_initializer"
            )
        self.l1 = self.l2 = 0.0
        if c.kernel_regularizer is not None:
            reg = read(RegularizerConfig, c.kernel_regularizer, f"{at}.kernel_regularizer")
            self.l1, self.l2 = float(reg.l1), float(reg.l2)
        # Keras ignores a bias constraint without a bias (it is still read, so checked)
        self.constraints = {
            name: constraint
            for name, spec, rank in (
                ("kernel", c.kernel_constraint, 2),
                ("bias", c.bias_constraint, 1),
            )
            if (constraint := constraints.get(spec, rank, f"{at}.{name}_constraint"))
            and name in self.params
        }
        self.constrained = bool(self.constraints)
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

    def constrain(self) -> None:
        for name, constraint in self.constraints.items():
            constraint.apply(self.params[name])


CONFIGS: dict[str, type[Checked]] = {
    "dense": DenseConfig,
    "dropout": DropoutConfig,
    "activation": ActivationConfig,
    "batch_normalization": BatchNormalizationConfig,
    "layer_normalization": LayerNormalizationConfig,
    "relu": ReLUConfig,
    "leaky_relu": LeakyReLUConfig,
    "elu": ELUConfig,
    "prelu": PReLUConfig,
    "flatten": FlattenConfig,
    "rescaling": RescalingConfig,
    "normalization": NormalizationConfig,
    "gaussian_noise": GaussianNoiseConfig,
    "gaussian_dropout": GaussianDropoutConfig,
    "alpha_dropout": AlphaDropoutConfig,
    "activity_regularization": ActivityRegularizationConfig,
}
"""Each layer type's config: the keys of its normalized spec (tests check them)."""

_PLAIN: dict[str, type[Layer]] = {
    cls.kind: cls
    for cls in (
        Dropout,
        ActivationLayer,
        BatchNormalization,
        LayerNormalization,
        ReLULayer,
        LeakyReLULayer,
        ELULayer,
        Flatten,
        Rescaling,
        Normalization,
        GaussianNoise,
        GaussianDropout,
        AlphaDropout,
        ActivityRegularization,
    )
}  # the layers built from (index, in_dim, cfg); dense and prelu draw weights from g


def build(index: int, in_dim: int, cfg: Mapping[str, Any], g: torch.Generator) -> Layer:
    """The layer a normalized `model.layers[index]` describes, on `in_dim` inputs."""
    kind = cfg.get("type") if isinstance(cfg, Mapping) else cfg
    if kind == "dense":
        return Dense(index, in_dim, cfg, g)
    if kind == "prelu":
        return PReLU(index, in_dim, cfg, g)
    cls = _PLAIN.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ConfigError(f"{where(index)}: unknown layer type {kind!r}")
    return cls(index, in_dim, cfg)  # type: ignore[call-arg]
