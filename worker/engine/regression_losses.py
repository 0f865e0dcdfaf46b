"""Keras' losses of target values, beyond mse/mae/huber: each value with its gradient
right below it. Targets are floats [n, k]; the per-sample value is the mean over the k
outputs (kl_divergence and categorical_hinge: the sum and the row's own value, as
Keras), so the gradient of the batch mean carries 1/(n·k) (1/n for those two).

ε is Keras' backend epsilon (1e-7). Keras' clip and maximum pass the gradient where
the value is inside (bounds included), which is what the masks below keep.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from fitq.worker.engine.loss_base import EPSILON, Loss

_LOG2 = math.log(2.0)


class MeanAbsolutePercentageError(Loss):
    """100·mean(|y − p| / max(|y|, ε)); ∂/∂p = 100·sign(p − y) / max(|y|, ε)."""

    name = "mean_absolute_percentage_error"

    def total(self, out: Tensor, y: Tensor) -> Tensor:
        return ((y - out).abs_().div_(y.abs().clamp_(min=EPSILON))).sum() * (100.0 / out.shape[1])

    def total_and_grad(self, out: Tensor, y: Tensor, into: Tensor) -> Tensor:
        n, k = out.shape
        into.copy_(self.total(out, y))
        return (out - y).sign_().div_(y.abs().clamp_(min=EPSILON)).mul_(100.0 / (n * k))


class MeanSquaredLogarithmicError(Loss):
    """mean((log(max(p, ε) + 1) − log(max(y, ε) + 1))²);
    ∂/∂p = 2·d·[p ≥ ε] / (max(p, ε) + 1), d the difference of the logs."""

    name = "mean_squared_logarithmic_error"

    def _d(self, out: Tensor, y: Tensor) -> Tensor:
        return out.clamp(min=EPSILON).log1p_() - y.clamp(min=EPSILON).log1p_()

    def total(self, out: Tensor, y: Tensor) -> Tensor:
        return self._d(out, y).square_().sum() / out.shape[1]

    def total_and_grad(self, out: Tensor, y: Tensor, into: Tensor) -> Tensor:
        n, k = out.shape
        d = self._d(out, y)
        torch.div(d.square().sum(), k, out=into)
        grad = d.mul_(2.0 / (n * k)).div_(out.clamp(min=EPSILON).add_(1.0))
        return grad.mul_(out >= EPSILON)


class LogCosh(Loss):
    """mean(log cosh(p − y)), computed as x + softplus(−2x) − log 2 (Keras');
    ∂/∂p = tanh(p − y)."""

    name = "log_cosh"

    def total(self, out: Tensor, y: Tensor) -> Tensor:
        x = out - y
        return (x + F.softplus(-2.0 * x) - _LOG2).sum() / out.shape[1]

    def total_and_grad(self, out: Tensor, y: Tensor, into: Tensor) -> Tensor:
        n, k = out.shape
        into.copy_(self.total(out, y))
        return (out - y).tanh_().mul_(1.0 / (n * k))


class KLDivergence(Loss):
    """Σₖ y·log(y / p) with y and p clipped to [ε, 1]; ∂/∂p = −y/p where p is inside."""

    name = "kl_divergence"

    def total(self, out: Tensor, y: Tensor) -> Tensor:
        t, p = y.clamp(EPSILON, 1.0), out.clamp(EPSILON, 1.0)
        return (t * (t / p).log_()).sum()

    def total_and_grad(self, out: Tensor, y: Tensor, into: Tensor) -> Tensor:
        n = out.shape[0]
        into.copy_(self.total(out, y))
        t, p = y.clamp(EPSILON, 1.0), out.clamp(EPSILON, 1.0)
        inside = (out >= EPSILON) & (out <= 1.0)
        return (t / p).neg_().mul_(inside).mul_(1.0 / n)


class Poisson(Loss):
    """mean(p − y·log(p + ε)); ∂/∂p = 1 − y/(p + ε)."""

    name = "poisson"

    def total(self, out: Tensor, y: Tensor) -> Tensor:
        return (out - y * (out + EPSILON).log()).sum() / out.shape[1]

    def total_and_grad(self, out: Tensor, y: Tensor, into: Tensor) -> Tensor:
        n, k = out.shape
        into.copy_(self.total(out, y))
        return (1.0 - y / (out + EPSILON)).mul_(1.0 / (n * k))


def _signed(y: Tensor) -> Tensor:
    """Keras' hinge labels: 0/1 become −1/1 when every label of the batch is 0 or 1;
    any other labels stay as they are (decided on the device, no sync)."""
    binary = ((y == 0) | (y == 1)).all()
    return torch.where(binary, 2.0 * y - 1.0, y)


class Hinge(Loss):
    """mean(max(1 − y·p, 0)), labels −1/1 (see `_signed`); ∂/∂p = −y·[1 − y·p > 0]."""

    name = "hinge"
    power = 1

    def total(self, out: Tensor, y: Tensor) -> Tensor:
        margin = (1.0 - _signed(y) * out).clamp_(min=0.0)
        return margin.pow_(self.power).sum() / out.shape[1]

    def total_and_grad(self, out: Tensor, y: Tensor, into: Tensor) -> Tensor:
        n, k = out.shape
        t = _signed(y)
        margin = (1.0 - t * out).clamp_(min=0.0)
        torch.div(margin.pow(self.power).sum(), k, out=into)
        if self.power == 1:
            return (margin > 0).to(out.dtype).mul_(t).mul_(-1.0 / (n * k))
        return margin.mul_(t).mul_(-2.0 / (n * k))  # squared: −2·y·max(1 − y·p, 0)


class SquaredHinge(Hinge):
    """mean(max(1 − y·p, 0)²); ∂/∂p = −2·y·max(1 − y·p, 0)."""

    name = "squared_hinge"
    power = 2


class CategoricalHinge(Loss):
    """max(neg − pos + 1, 0) per row, pos = Σₖ y·p, neg = maxₖ (1 − y)·p (one-hot y).
    Where positive: ∂/∂p = (1 − y)·g − y, g spreading 1 over the maxima of (1 − y)·p
    (as the gradient of Keras' max does, ties shared)."""

    name = "categorical_hinge"

    def _rows(self, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        others = (1.0 - y) * out
        neg = others.amax(dim=1, keepdim=True)
        pos = (y * out).sum(dim=1, keepdim=True)
        return (neg - pos + 1.0).clamp_(min=0.0), others == neg

    def total(self, out: Tensor, y: Tensor) -> Tensor:
        return self._rows(out, y)[0].sum()

    def total_and_grad(self, out: Tensor, y: Tensor, into: Tensor) -> Tensor:
        n = out.shape[0]
        rows, at_max = self._rows(out, y)
        torch.sum(rows, dim=(0, 1), out=into)
        g = at_max.to(out.dtype)
        g.div_(g.sum(dim=1, keepdim=True))
        grad = g.mul_(1.0 - y).sub_(y)
        return grad.mul_((rows > 0).to(out.dtype)).mul_(1.0 / n)
