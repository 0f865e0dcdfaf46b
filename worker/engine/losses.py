"""Losses: the value and, right below it, its gradient; the registry of every loss.

Every loss is Keras' (the interface: `loss_base.Loss`): `total(out, y)` returns Σₙ
loss(n) and `total_and_grad(out, y, into)` writes that sum into the 0-d tensor `into`
and returns ∂(mean loss)/∂out [n, k]. This module has the cross-entropies, mse, mae and
huber; `focal_losses` and `regression_losses` the others.

Targets arrive in the form `prepare_targets` gives them: class indices [n, 1]
(int64) for sparse categorical cross-entropy, floats [n, k] for the others.

Cross-entropies from logits use log-sum-exp (log_softmax / softplus), never log(0):
softmax + cross-entropy gives dZ = (p − y)/n and sigmoid + binary cross-entropy
dZ = (σ(z) − y)/(n·k). On probabilities (`from_logits: false` where the engine
could not fuse the final activation away) they clip to [ε, 1 − ε], ε = 1e-7, as Keras.
`label_smoothing` ε′ (categorical and binary) smooths the targets first, as Keras:
y·(1 − ε′) + ε′/k for k classes, y·(1 − ε′) + ε′/2 for binary labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fitq.worker.engine import focal_losses, regression_losses
from fitq.worker.engine.config import Checked, read, real
from fitq.worker.engine.errors import ConfigError
from fitq.worker.engine.loss_base import EPSILON, Loss

__all__ = ["EPSILON", "LOSSES", "PARAMETERS", "Loss", "get"]

_SUM = 2  # aten's Reduction::Sum

ONE_HOT_TARGETS = (
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "categorical_hinge",
)
"""Losses whose class-index targets the engine one-hot encodes (a documented convenience)."""
BINARY_TARGETS = ("binary_crossentropy", "binary_focal_crossentropy")
"""Losses whose targets must lie in [0, 1]."""


class SparseCategoricalCrossentropy(Loss):
    name, sparse_targets = "sparse_categorical_crossentropy", True

    def _log_p(self, out: Tensor) -> Tensor:
        if self.from_logits:
            return torch.log_softmax(out, dim=1)
        q = out / out.sum(dim=1, keepdim=True)
        return q.clamp(EPSILON, 1.0 - EPSILON).log_()

    def total(self, out: Tensor, y: Tensor) -> Tensor:
        return -self._log_p(out).gather(1, y).sum()

    def total_and_grad(self, out: Tensor, y: Tensor, into: Tensor) -> Tensor:
        n = out.shape[0]
        if not self.from_logits:
            onehot = torch.zeros_like(out).scatter_(1, y, 1.0)
            return _cce_probabilities(out, onehot, into)
        log_p = torch.log_softmax(out, dim=1)  # log-sum-exp inside
        # Σₙ −log p[n, yₙ], straight into `into` (aten's nll_loss, sum reduction)
        torch.ops.aten.nll_loss.out(log_p, y.view(-1), None, _SUM, -100, out=into)
        grad = log_p.exp_().mul_(1.0 / n)  # p/n  [n, k]
        return grad.scatter_add_(1, y, self._minus(n, grad))  # dZ = (p − onehot(y))/n

    def _minus(self, n: int, like: Tensor) -> Tensor:
        """−1/n in a [n, 1] tensor, kept per batch size (the scatter's source)."""
        cache = self.__dict__.setdefault("_minus_cache", {})
        key = (n, like.dtype, like.device)
        t = cache.get(key)
        if t is None:
            t = cache[key] = torch.full((n, 1), -1.0 / n, dtype=like.dtype, device=like.device)
        return t


class CategoricalCrossentropy(Loss):
    name = "categorical_crossentropy"

    def __init__(self, from_logits: bool, label_smoothing: float):
        super().__init__(from_logits)
        self.smoothing = label_smoothing

    def _smooth(self, y: Tensor) -> Tensor:
        if not self.smoothing:
            return y
        return y * (1.0 - self.smoothing) + self.smoothing / y.shape[1]

    def total(self, out: Tensor, y: Tensor) -> Tensor:
        y = self._smooth(y)
        if self.from_logits:
            return -(y * torch.log_softmax(out, dim=1)).sum()
        q = out / out.sum(dim=1, keepdim=True)
        return -(y * q.clamp(EPSILON, 1.0 - EPSILON).log()).sum()

    def total_and_grad(self, out: Tensor, y: Tensor, into: Tensor) -> Tensor:
        y = self._smooth(y)
        if not self.from_logits:
            return _cce_probabilities(out, y, into)
        n = out.shape[0]
        log_p = torch.log_softmax(out, dim=1)
        torch.neg((y * log_p).sum(), out=into)
        # dZ = (p Σⱼyⱼ − y)/n, which is (p − y)/n for one-hot rows
        return (log_p.exp_() * y.sum(dim=1, keepdim=True) - y).mul_(1.0 / n)


def _cce_probabilities(p: Tensor, y: Tensor, into: Tensor) -> Tensor:
    """Keras' cross-entropy on probabilities: q = p/Σp, clipped to [ε, 1−ε]."""
    n = p.shape[0]
    s = p.sum(dim=1, keepdim=True)
    q = p / s
    c = q.clamp(EPSILON, 1.0 - EPSILON)
    torch.neg((y * c.log()).sum(), out=into)
    dq = torch.where((q > EPSILON) & (q < 1.0 - EPSILON), -y / c, torch.zeros_like(q))
    return (dq - (dq * q).sum(dim=1, keepdim=True)).div_(s).mul_(1.0 / n)  # through q = p/Σp


class BinaryCrossentropy(Loss):
    name = "binary_crossentropy"

    def __init__(self, from_logits: bool, label_smoothing: float):
        super().__init__(from_logits)
        self.smoothing = label_smoothing

    def _smooth(self, y: Tensor) -> Tensor:
        return y * (1.0 - self.smoothing) + 0.5 * self.smoothing if self.smoothing else y

    def total(self, out: Tensor, y: Tensor) -> Tensor:
        y = self._smooth(y)
        k = out.shape[1]
        if self.from_logits:
            return F.binary_cross_entropy_with_logits(out, y, reduction="sum") / k
        p = out.clamp(EPSILON, 1.0 - EPSILON)
        return -(y * p.log() + (1.0 - y) * (1.0 - p).log()).sum() / k

    def total_and_grad(self, out: Tensor, y: Tensor, into: Tensor) -> Tensor:
        n, k = out.shape
        into.copy_(self.total(out, y))
        y = self._smooth(y)
        if self.from_logits:
            return (torch.sigmoid(out) - y).mul_(1.0 / (n * k))  # dZ = (σ(z) − y)/(n·k)
        inside = (out > EPSILON) & (out < 1.0 - EPSILON)
        p = out.clamp(EPSILON, 1.0 - EPSILON)
        grad = (p - y) / (p * (1.0 - p))
        return torch.where(inside, grad, torch.zeros_like(grad)).mul_(1.0 / (n * k))


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def total(self, out: Tensor, y: Tensor) -> Tensor:
        return (out - y).square_().sum() / out.shape[1]

    def total_and_grad(self, out: Tensor, y: Tensor, into: Tensor) -> Tensor:
        n, k = out.shape
        e = out - y
        torch.div(torch.sum(e * e), k, out=into)
        return e.mul_(2.0 / (n * k))  # 2(p − y)/(n·k)


class MeanAbsoluteError(Loss):
    name = "mean_absolute_error"

    def total(self, out: Tensor, y: Tensor) -> Tensor:
        return (out - y).abs_().sum() / out.shape[1]

    def total_and_grad(self, out: Tensor, y: Tensor, into: Tensor) -> Tensor:
        n, k = out.shape
        e = out - y
        torch.div(e.abs().sum(), k, out=into)
        return e.sign_().mul_(1.0 / (n * k))  # sign(p − y)/(n·k)


class Huber(Loss):
    name = "huber"

    def __init__(self, delta: float):
        super().__init__()
        self.delta = float(delta)

    def total(self, out: Tensor, y: Tensor) -> Tensor:
        e = (out - y).abs_()
        d = self.delta
        per = torch.where(e <= d, 0.5 * e * e, d * e - 0.5 * d * d)
        return per.sum() / out.shape[1]

    def total_and_grad(self, out: Tensor, y: Tensor, into: Tensor) -> Tensor:
        n, k = out.shape
        into.copy_(self.total(out, y))
        return (out - y).clamp_(-self.delta, self.delta).mul_(1.0 / (n * k))


LOSSES: dict[str, type[Loss]] = {
    cls.name: cls
    for cls in (
        SparseCategoricalCrossentropy,
        CategoricalCrossentropy,
        BinaryCrossentropy,
        focal_losses.BinaryFocalCrossentropy,
        focal_losses.CategoricalFocalCrossentropy,
        MeanSquaredError,
        MeanAbsoluteError,
        Huber,
        regression_losses.MeanAbsolutePercentageError,
        regression_losses.MeanSquaredLogarithmicError,
        regression_losses.LogCosh,
        regression_losses.KLDivergence,
        regression_losses.Poisson,
        regression_losses.Hinge,
        regression_losses.SquaredHinge,
        regression_losses.CategoricalHinge,
    )
}


# ------------------------------------------------------------------ configs


@dataclass(frozen=True)
class CrossEntropyConfig(Checked):
    from_logits: bool


@dataclass(frozen=True)
class SmoothedCrossEntropyConfig(Checked):
    from_logits: bool
    label_smoothing: Annotated[float, real(ge=0, le=1)]


@dataclass(frozen=True)
class BinaryFocalConfig(Checked):
    apply_class_balancing: bool
    alpha: Annotated[float, real(ge=0, le=1)]  # label 1's weight; label 0's is 1 − alpha
    gamma: Annotated[float, real(ge=0)]  # (1 − p_t)^γ is finite at p_t = 1
    from_logits: bool
    label_smoothing: Annotated[float, real(ge=0, le=1)]


@dataclass(frozen=True)
class CategoricalFocalConfig(Checked):
    alpha: Annotated[float, real(ge=0)]
    gamma: Annotated[float, real(ge=0)]
    from_logits: bool
    label_smoothing: Annotated[float, real(ge=0, le=1)]


@dataclass(frozen=True)
class RegressionConfig(Checked):
    """The losses without parameters (mse, mae, mape, msle, log_cosh, …, the hinges)."""


@dataclass(frozen=True)
class HuberConfig(Checked):
    delta: Annotated[float, real(gt=0)]  # quadratic within ±delta, linear beyond


_WITHOUT_PARAMETERS = (
    "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error", "log_cosh", "kl_divergence", "poisson", "hinge",
    "squared_hinge", "categorical_hinge",
)  # fmt: skip

PARAMETERS: dict[str, type[Checked]] = {
    "sparse_categorical_crossentropy": CrossEntropyConfig,
    "categorical_crossentropy": SmoothedCrossEntropyConfig,
    "binary_crossentropy": SmoothedCrossEntropyConfig,
    "binary_focal_crossentropy": BinaryFocalConfig,
    "categorical_focal_crossentropy": CategoricalFocalConfig,
    "huber": HuberConfig,
    **{name: RegressionConfig for name in _WITHOUT_PARAMETERS},
}


def get(config: Mapping[str, Any]) -> Loss:
    """The loss a normalized `compile.loss` names: `{"name": …, its parameters}`."""
    name = config.get("name") if isinstance(config, Mapping) else config
    if not isinstance(name, str) or name not in LOSSES:
        raise ConfigError(f"compile.loss: unknown loss {name!r}")
    params: Any = read(PARAMETERS[name], config, "compile.loss", tag="name")
    return LOSSES[name](**asdict(params))
