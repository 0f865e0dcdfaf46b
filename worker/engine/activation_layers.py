"""Activation layers: `activation` (a named function) and Keras' layers that carry their
function's parameters — ReLU, LeakyReLU, ELU — and PReLU, whose negative slope is a
trained weight per unit. None overwrites its input (an earlier layer may need it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from torch import Tensor

from fitq.worker.engine import activations
from fitq.worker.engine.config import Checked, read, real
from fitq.worker.engine.initializers import initialize
from fitq.worker.engine.layer_base import Context, Layer, where

# ------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class ActivationConfig(Checked):
    activation: str


@dataclass(frozen=True)
class ReLUConfig(Checked):
    """Keras' ReLU layer; Keras refuses a negative value of any of the three."""

    max_value: Annotated[float | None, real(ge=0)]  # None: unbounded
    negative_slope: Annotated[float, real(ge=0)]
    threshold: Annotated[float, real(ge=0)]


@dataclass(frozen=True)
class LeakyReLUConfig(Checked):
    negative_slope: Annotated[float, real(ge=0)]  # ≥ 0 as Keras: y > 0 ⇔ z > 0


@dataclass(frozen=True)
class ELUConfig(Checked):
    alpha: Annotated[float, real()]


@dataclass(frozen=True)
class PReLUConfig(Checked):
    alpha_initializer: Mapping[str, Any]


# ------------------------------------------------------------------------- layers


class ActivationLayer(Layer):
    """A standalone activation function."""

    kind = "activation"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any]):
        super().__init__(index, in_dim)
        self.activation = self._activation(cfg)

    def _activation(self, cfg: Mapping[str, Any]) -> activations.Activation:
        c = read(ActivationConfig, cfg, where(self.index), tag="type")
        return activations.get(c.activation, f"{where(self.index)}.activation")

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        z = x.clone() if self.activation.in_place else x
        y = self.activation.forward(z)
        if ctx.training:
            self._x, self._y = x, y
        return y

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        return self.activation.backward(dy, self._x, self._y) if need_dx else None


class ReLULayer(ActivationLayer):
    kind = "relu"

    def _activation(self, cfg: Mapping[str, Any]) -> activations.Activation:
        c = read(ReLUConfig, cfg, where(self.index), tag="type")
        return activations.KerasReLU(c.max_value, c.negative_slope, c.threshold)


class LeakyReLULayer(ActivationLayer):
    kind = "leaky_relu"

    def _activation(self, cfg: Mapping[str, Any]) -> activations.Activation:
        c = read(LeakyReLUConfig, cfg, where(self.index), tag="type")
        return activations.LeakyReLU(c.negative_slope)


class ELULayer(ActivationLayer):
    kind = "elu"

    def _activation(self, cfg: Mapping[str, Any]) -> activations.Activation:
        return activations.ELU(read(ELUConfig, cfg, where(self.index), tag="type").alpha)


class PReLU(Layer):
    """Keras' PReLU (shared_axes None): y = relu(x) − α·relu(−x), a trained α [units].

    backward:  dX = dY·([x > 0] + α·[x < 0]),  dα = Σₙ dY·min(x, 0)
    """

    kind = "prelu"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any], g: torch.Generator):
        super().__init__(index, in_dim)
        c = read(PReLUConfig, cfg, where(index), tag="type")
        self.params["alpha"] = initialize(
            c.alpha_initializer, (in_dim,), g, f"{where(index)}.alpha_initializer"
        )
        self.grads = {k: torch.zeros_like(t) for k, t in self.params.items()}

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        negative = x.clamp(max=0.0)  # min(x, 0) = −relu(−x)
        y = x.clamp(min=0.0).addcmul_(negative, self.params["alpha"])
        if ctx.training:
            self._x, self._negative = x, negative
        return y

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        torch.sum(dy * self._negative, dim=0, out=self.grads["alpha"])  # dα  [units]
        if not need_dx:
            return None
        x, alpha = self._x, self.params["alpha"]
        return torch.where(x > 0, dy, torch.where(x < 0, dy * alpha, 0.0))
