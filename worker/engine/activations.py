"""Activations: forward and, right below it, backward.

`forward(z)` returns y = f(z); where `in_place` is true it overwrites z and returns
it, because `backward` needs only y. `backward(dy, z, y)` returns dZ = dY ⊙ f'(Z)
and may overwrite dy (the engine never reads dy again). Shapes: z, y, dy [n, units].

Names and constants follow Keras 3 (see docs/spec-contract.md): leaky_relu slope
0.2, elu alpha 1, gelu exact (erf), silu (Keras' swish), hard_sigmoid = relu6(x + 3) / 6.
LeakyReLU and ELU take their parameter (Keras' layers of those names carry one), and
`KerasReLU` is Keras' `relu(x, negative_slope, max_value, threshold)`: the registry
(`get`) makes each named activation with the defaults above.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from fitq.worker.engine.errors import ConfigError

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
LEAKY_RELU_SLOPE = 0.2
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class Activation:
    name = ""
    in_place = False  # forward overwrites z; backward reads only y

    def forward(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def backward(self, dy: Tensor, z: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError


class Linear(Activation):
    name, in_place = "linear", True

    def forward(self, z: Tensor) -> Tensor:
        return z

    def backward(self, dy: Tensor, z: Tensor, y: Tensor) -> Tensor:
        return dy


class ReLU(Activation):
    name, in_place = "relu", True

    def forward(self, z: Tensor) -> Tensor:
        return torch.relu_(z)

    def backward(self, dy: Tensor, z: Tensor, y: Tensor) -> Tensor:
        # dZ = dY ⊙ [y > 0], written over dy (aten's relu backward, out= variant)
        return torch.ops.aten.threshold_backward.grad_input(dy, y, 0.0, grad_input=dy)


class Sigmoid(Activation):
    name, in_place = "sigmoid", True

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid_(z)

    def backward(self, dy: Tensor, z: Tensor, y: Tensor) -> Tensor:
        return dy.mul_(y * (1.0 - y))  # σ' = y (1 − y)


class Tanh(Activation):
    name, in_place = "tanh", True

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh_(z)

    def backward(self, dy: Tensor, z: Tensor, y: Tensor) -> Tensor:
        return dy.mul_(1.0 - y * y)  # tanh' = 1 − y²


class Softmax(Activation):
    name = "softmax"  # over the last axis

    def forward(self, z: Tensor) -> Tensor:
        return torch.softmax(z, dim=-1)

    def backward(self, dy: Tensor, z: Tensor, y: Tensor) -> Tensor:
        # dZ = y ⊙ (dY − Σⱼ dYⱼ yⱼ)   (the Jacobian-vector product, row by row)
        return y * (dy - (dy * y).sum(dim=-1, keepdim=True))


class LeakyReLU(Activation):
    """z for z > 0, slope·z otherwise; slope ≥ 0 (Keras refuses a negative one)."""

    name, in_place = "leaky_relu", True

    def __init__(self, negative_slope: float = LEAKY_RELU_SLOPE):
        self.slope = float(negative_slope)

    def forward(self, z: Tensor) -> Tensor:
        return F.leaky_relu_(z, self.slope)

    def backward(self, dy: Tensor, z: Tensor, y: Tensor) -> Tensor:
        return torch.where(y > 0, dy, dy * self.slope)  # y > 0 ⇔ z > 0 (slope ≥ 0)


class ELU(Activation):
    """z for z > 0, α(eᶻ − 1) otherwise. In place when α ≥ 0, where y > 0 ⇔ z > 0."""

    name = "elu"

    def __init__(self, alpha: float = 1.0):
        self.alpha = float(alpha)
        self.in_place = self.alpha >= 0

    def forward(self, z: Tensor) -> Tensor:
        return F.elu_(z, self.alpha) if self.in_place else F.elu(z, self.alpha)

    def backward(self, dy: Tensor, z: Tensor, y: Tensor) -> Tensor:
        # z ≤ 0: d/dz α(eᶻ − 1) = α·eᶻ = y + α
        positive = y > 0 if self.in_place else z > 0
        return torch.where(positive, dy, dy * (y + self.alpha))


class KerasReLU(Activation):
    """Keras' relu with its parameters (the ReLU layer):

        f(z) = min(z, max_value)        for z > threshold
        f(z) = slope·(z − threshold)    otherwise

    (Keras: clip(z·[z > t], 0, max) − slope·relu(t − z); t ≥ 0, so z > t means z > 0.)
    """

    name = "relu"

    def __init__(self, max_value: float | None, negative_slope: float, threshold: float):
        self.max_value = None if max_value is None else float(max_value)
        self.slope = float(negative_slope)
        self.threshold = float(threshold)

    def forward(self, z: Tensor) -> Tensor:
        above = z.clamp(max=self.max_value) if self.max_value is not None else z
        return torch.where(z > self.threshold, above, (z - self.threshold).mul_(self.slope))

    def backward(self, dy: Tensor, z: Tensor, y: Tensor) -> Tensor:
        # 1 between the threshold and max_value, slope up to the threshold, 0 above max
        below = z <= self.threshold
        inside = ~below if self.max_value is None else ~below & (z <= self.max_value)
        return torch.where(inside, dy, torch.where(below, dy * self.slope, 0.0))


class SELU(Activation):
    name, in_place = "selu", True

    def forward(self, z: Tensor) -> Tensor:
        return torch.selu_(z)

    def backward(self, dy: Tensor, z: Tensor, y: Tensor) -> Tensor:
        # z > 0: scale; z ≤ 0: scale·α·eᶻ = y + scale·α
        return torch.where(y > 0, dy * SELU_SCALE, dy * (y + SELU_SCALE * SELU_ALPHA))


class GELU(Activation):
    name = "gelu"  # exact: z Φ(z)

    def forward(self, z: Tensor) -> Tensor:
        return F.gelu(z)

    def backward(self, dy: Tensor, z: Tensor, y: Tensor) -> Tensor:
        cdf = 0.5 * (1.0 + torch.erf(z * _INV_SQRT_2))
        pdf = torch.exp(-0.5 * z * z) * _INV_SQRT_2PI
        return dy.mul_(cdf + z * pdf)  # gelu' = Φ(z) + z φ(z)


class Softplus(Activation):
    name = "softplus"  # log(1 + eᶻ), computed stably

    def forward(self, z: Tensor) -> Tensor:
        return torch.logaddexp(z, torch.zeros((), dtype=z.dtype, device=z.device))

    def backward(self, dy: Tensor, z: Tensor, y: Tensor) -> Tensor:
        return dy.mul_(torch.sigmoid(z))


class Softsign(Activation):
    name = "softsign"  # z / (1 + |z|)

    def forward(self, z: Tensor) -> Tensor:
        return z / (1.0 + z.abs())

    def backward(self, dy: Tensor, z: Tensor, y: Tensor) -> Tensor:
        return dy.div_((1.0 + z.abs()).square_())  # 1 / (1 + |z|)²


class SiLU(Activation):
    name = "silu"  # z σ(z), Keras' swish

    def forward(self, z: Tensor) -> Tensor:
        return F.silu(z)

    def backward(self, dy: Tensor, z: Tensor, y: Tensor) -> Tensor:
        s = torch.sigmoid(z)
        return dy.mul_(s * (1.0 + z * (1.0 - s)))


class HardSigmoid(Activation):
    name = "hard_sigmoid"  # relu6(z + 3) / 6, torch's hardsigmoid

    def forward(self, z: Tensor) -> Tensor:
        return F.hardsigmoid(z)

    def backward(self, dy: Tensor, z: Tensor, y: Tensor) -> Tensor:
        inside = (z > -3.0) & (z < 3.0)
        return torch.where(inside, dy / 6.0, torch.zeros_like(dy))


ACTIVATIONS: dict[str, type[Activation]] = {
    cls.name: cls
    for cls in (
        Linear,
        ReLU,
        Sigmoid,
        Tanh,
        Softmax,
        LeakyReLU,
        ELU,
        SELU,
        GELU,
        Softplus,
        Softsign,
        SiLU,
        HardSigmoid,
    )
}


def get(name: str, where: str = "activation") -> Activation:
    """The activation a normalized spec names (canonical names only: the service
    resolves `swish` and Keras' spellings)."""
    cls = ACTIVATIONS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(f"{where}: unknown activation {name!r}")
    return cls()
