"""Activations: forward and, right below it, backward.

`forward(z)` returns y = f(z); where `in_place` is true it overwrites z and returns
it, because `backward` needs only y. `backward(dy, z, y)` returns dZ = dY ⊙ f'(Z)
and may overwrite dy (the engine never reads dy again). Shapes: z, y, dy [n, units].

Names and constants follow Keras 3 (see docs/spec-contract.md): leaky_relu slope
0.2, elu alpha 1, gelu exact (erf), silu (Keras' swish), hard_sigmoid = relu6(x + 3) / 6.
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
    name, in_place = "leaky_relu", True

    def forward(self, z: Tensor) -> Tensor:
        return F.leaky_relu_(z, LEAKY_RELU_SLOPE)

    def backward(self, dy: Tensor, z: Tensor, y: Tensor) -> Tensor:
        return torch.where(y > 0, dy, dy * LEAKY_RELU_SLOPE)  # y > 0 ⇔ z > 0


class ELU(Activation):
    name, in_place = "elu", True

    def forward(self, z: Tensor) -> Tensor:
        return F.elu_(z, 1.0)

    def backward(self, dy: Tensor, z: Tensor, y: Tensor) -> Tensor:
        return torch.where(y > 0, dy, dy * (y + 1.0))  # z ≤ 0: d/dz (eᶻ − 1) = y + 1


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
