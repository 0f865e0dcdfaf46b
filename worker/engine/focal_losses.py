"""Keras' focal cross-entropies, computed as Keras does: on probabilities (σ or softmax of
the logits first when `from_logits`), clipped to [ε, 1 − ε]; each value with its
gradient below it, through the clip, the normalization and the logits' activation.
`label_smoothing` ε′ smooths the targets first: y·(1 − ε′) + ε′/2 (binary) or
y·(1 − ε′) + ε′/k (categorical, k classes).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fitq.worker.engine.loss_base import EPSILON, Loss


def _power(base: Tensor, gamma: float) -> tuple[Tensor, Tensor]:
    """(base^γ, d(base^γ)/d(base)); γ = 0 gives (1, 0), as torch's pow does at 0⁰."""
    if gamma == 0:
        return torch.ones_like(base), torch.zeros_like(base)
    return base.pow(gamma), base.pow(gamma - 1.0).mul_(gamma)


class BinaryFocalCrossentropy(Loss):
    """Per output: w·(1 − p_t)^γ · bce(y, p), p_t = y·p + (1 − y)·(1 − p), bce on p clipped
    to [ε, 1 − ε], w = α·y + (1 − α)·(1 − y) with class balancing (else 1); the mean
    over the k outputs. p_t uses the unclipped p, as Keras'."""

    name = "binary_focal_crossentropy"

    def __init__(
        self,
        apply_class_balancing: bool,
        alpha: float,
        gamma: float,
        from_logits: bool,
        label_smoothing: float,
    ):
        super().__init__(from_logits)
        self.balanced, self.alpha, self.gamma = apply_class_balancing, alpha, gamma
        self.smoothing = label_smoothing

    def _parts(self, out: Tensor, y: Tensor) -> tuple[Tensor, ...]:
        """(t, p, c, bce, focal, ∂focal/∂(1 − p_t), w): the smoothed targets, the
        probabilities, them clipped, the cross-entropy, the focal factor, the weights."""
        t = y * (1.0 - self.smoothing) + 0.5 * self.smoothing if self.smoothing else y
        p = torch.sigmoid(out) if self.from_logits else out
        c = p.clamp(EPSILON, 1.0 - EPSILON)
        bce = -(t * c.log() + (1.0 - t) * (1.0 - c).log())
        focal, dfocal = _power(1.0 - (t * p + (1.0 - t) * (1.0 - p)), self.gamma)
        w = t * self.alpha + (1.0 - t) * (1.0 - self.alpha) if self.balanced else 1.0
        return t, p, c, bce, focal, dfocal, torch.as_tensor(w, dtype=out.dtype)

    def total(self, out: Tensor, y: Tensor) -> Tensor:
        _, _, _, bce, focal, _, w = self._parts(out, y)
        return (focal * bce * w).sum() / out.shape[1]

    def total_and_grad(self, out: Tensor, y: Tensor, into: Tensor) -> Tensor:
        n, k = out.shape
        t, p, c, bce, focal, dfocal, w = self._parts(out, y)
        torch.div((focal * bce * w).sum(), k, out=into)
        # ∂/∂p: d(1 − p_t)/dp = 1 − 2t; ∂bce/∂c = (c − t)/(c(1 − c)) inside the clip
        inside = (p >= EPSILON) & (p <= 1.0 - EPSILON)
        dbce = torch.where(inside, (c - t) / (c * (1.0 - c)), 0.0)
        grad = (dfocal * (1.0 - 2.0 * t) * bce + focal * dbce) * w
        if self.from_logits:
            grad = grad * p * (1.0 - p)  # σ' = σ(1 − σ)
        return grad.mul_(1.0 / (n * k))


class CategoricalFocalCrossentropy(Loss):
    """Per row: Σₖ α·(1 − q)^γ · (−y·log q), q = p/Σp clipped to [ε, 1 − ε] (p = softmax
    of the logits with `from_logits`)."""

    name = "categorical_focal_crossentropy"

    def __init__(self, alpha: float, gamma: float, from_logits: bool, label_smoothing: float):
        super().__init__(from_logits)
        self.alpha, self.gamma, self.smoothing = alpha, gamma, label_smoothing

    def _parts(self, out: Tensor, y: Tensor) -> tuple[Tensor, ...]:
        k = out.shape[1]
        t = y * (1.0 - self.smoothing) + self.smoothing / k if self.smoothing else y
        p = torch.softmax(out, dim=1) if self.from_logits else out
        s = p.sum(dim=1, keepdim=True)
        q = p / s
        c = q.clamp(EPSILON, 1.0 - EPSILON)
        focal, dfocal = _power(1.0 - c, self.gamma)
        return t, p, s, q, c, focal, dfocal

    def total(self, out: Tensor, y: Tensor) -> Tensor:
        t, _, _, _, c, focal, _ = self._parts(out, y)
        return (focal * (-t * c.log())).sum() * self.alpha

    def total_and_grad(self, out: Tensor, y: Tensor, into: Tensor) -> Tensor:
        n = out.shape[0]
        t, p, s, q, c, focal, dfocal = self._parts(out, y)
        log_c = c.log()
        torch.mul((focal * (-t * log_c)).sum(), self.alpha, out=into)
        # ∂/∂c of α·(1 − c)^γ·(−t·log c), then through the clip and q = p/Σp
        dc = (dfocal * t * log_c - focal * t / c).mul_(self.alpha)
        dq = torch.where((q >= EPSILON) & (q <= 1.0 - EPSILON), dc, 0.0)
        dp = (dq - (dq * q).sum(dim=1, keepdim=True)).div_(s)
        if self.from_logits:
            dp = p * (dp - (dp * p).sum(dim=1, keepdim=True))  # through the softmax
        return dp.mul_(1.0 / n)
