"""Losses and metrics per member: the solo ones (worker/engine/losses.py, metrics.py) on
[K, n, k] outputs, summed per member, with row weights.

The solo loss reduces over its whole batch; a pack needs one sum per member and must
leave out the padding of a member's short batch. So each loss here computes, per row,
the solo loss's per-sample value and the gradient of it, and the pack weights the rows:
`valid` [K, n] is 1 for a member's real rows, 0 for padding; `w` [K, n] is `valid / n_k`,
n_k the member's rows in this step, which turns a row's gradient into the solo run's
∂(mean loss)/∂out. The formulas, constants and clipping are the solo module's, row by
row; tests/engine/test_pack_objectives.py checks values and gradients against it per
member in float64.

Targets as the solo trainer prepares them: class indices [K, n, 1] int64 for sparse
categorical cross-entropy, floats [K, n, k] otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fitq.worker.engine import losses, metrics
from fitq.worker.engine.activations import Activation
from fitq.worker.engine.losses import EPSILON


class Loss:
    """The per-row form of one solo loss (its name, from_logits and delta)."""

    def __init__(self, solo: losses.Loss):
        self.name = solo.name
        self.from_logits = solo.from_logits
        self.delta = getattr(solo, "delta", 1.0)
        self._minus: dict[tuple, Tensor] = {}

    def rows(self, out: Tensor, y: Tensor) -> Tensor:
        """Each row's loss [K, n] (the solo loss's per-sample value)."""
        return self._rows_and_grad(out, y, None)[0]

    def rows_and_grad(self, out: Tensor, y: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        """(each row's loss [K, n], w-weighted ∂loss/∂out [K, n, k]); may overwrite out."""
        rows, grad = self._rows_and_grad(out, y, w.unsqueeze(-1))
        assert grad is not None
        return rows, grad

    def _rows_and_grad(self, out: Tensor, y: Tensor, w: Tensor | None):
        name, k = self.name, out.shape[-1]
        if name == "sparse_categorical_crossentropy" and self.from_logits:
            log_p = torch.log_softmax(out, dim=-1)  # log-sum-exp inside
            rows = log_p.gather(-1, y).squeeze_(-1).neg_()
            if w is None:
                return rows, None
            grad = log_p.exp_().scatter_add_(-1, y, self._minus_one(y, out))  # p − onehot(y)
            return rows, grad.mul_(w)
        if name in ("sparse_categorical_crossentropy", "categorical_crossentropy"):
            onehot = y
            if y.dtype == torch.int64:
                onehot = torch.zeros_like(out).scatter_(-1, y, 1.0)
            if not self.from_logits:
                return _cce_probabilities(out, onehot, w)
            log_p = torch.log_softmax(out, dim=-1)
            rows = (onehot * log_p).sum(dim=-1).neg_()
            if w is None:
                return rows, None
            # (p Σⱼyⱼ − y), which is p − y for one-hot rows
            return rows, (log_p.exp_() * onehot.sum(dim=-1, keepdim=True) - onehot).mul_(w)
        if name == "binary_crossentropy":
            if self.from_logits:
                rows = F.binary_cross_entropy_with_logits(out, y, reduction="none").sum(-1) / k
                return rows, None if w is None else (torch.sigmoid(out) - y).mul_(w / k)
            p = out.clamp(EPSILON, 1.0 - EPSILON)
            rows = -(y * p.log() + (1.0 - y) * (1.0 - p).log()).sum(-1) / k
            if w is None:
                return rows, None
            inside = (out > EPSILON) & (out < 1.0 - EPSILON)
            grad = (p - y) / (p * (1.0 - p))
            return rows, torch.where(inside, grad, torch.zeros_like(grad)).mul_(w / k)
        e = out - y
        if name == "mean_squared_error":
            rows = (e * e).sum(-1) / k
            return rows, None if w is None else e.mul_(w * (2.0 / k))  # 2(p − y)/(n·k)
        if name == "mean_absolute_error":
            rows = e.abs().sum(-1) / k
            return rows, None if w is None else e.sign_().mul_(w / k)  # sign(p − y)/(n·k)
        if name == "huber":
            a, d = e.abs(), self.delta
            rows = torch.where(a <= d, 0.5 * a * a, d * a - 0.5 * d * d).sum(-1) / k
            return rows, None if w is None else e.clamp_(-d, d).mul_(w / k)
        raise AssertionError(f"no packed form of loss {name!r}")

    def _minus_one(self, y: Tensor, like: Tensor) -> Tensor:
        """−1 in y's shape (the scatter's source), kept per shape."""
        key = (*y.shape, like.dtype, like.device)
        t = self._minus.get(key)
        if t is None:
            t = self._minus[key] = torch.full(y.shape, -1.0, dtype=like.dtype, device=like.device)
        return t


def _cce_probabilities(p: Tensor, y: Tensor, w: Tensor | None):
    """Keras' cross-entropy on probabilities: q = p/Σp, clipped to [ε, 1−ε]."""
    s = p.sum(dim=-1, keepdim=True)
    q = p / s
    c = q.clamp(EPSILON, 1.0 - EPSILON)
    rows = (y * c.log()).sum(dim=-1).neg_()
    if w is None:
        return rows, None
    dq = torch.where((q > EPSILON) & (q < 1.0 - EPSILON), -y / c, torch.zeros_like(q))
    return rows, (dq - (dq * q).sum(dim=-1, keepdim=True)).div_(s).mul_(w)  # through q = p/Σp


class Metric:
    """The per-row form of one solo metric: `hits(out, y)` [K, n], summed per member."""

    def __init__(self, solo: metrics.Metric, logits: bool, activation: Activation | None):
        self.name = solo.name
        self.logits, self.activation = logits, activation

    def rows(self, out: Tensor, y: Tensor) -> Tensor:
        if self.name == "accuracy":
            if out.shape[-1] == 1:  # binary: threshold 0 on logits, 0.5 on probabilities
                threshold = 0.0 if self.logits else 0.5
                return ((out > threshold).to(y.dtype) == y).squeeze(-1)
            if y.dtype == torch.int64:  # sparse categorical
                return out.argmax(dim=-1) == y.squeeze(-1)
            return out.argmax(dim=-1) == y.argmax(dim=-1)  # categorical
        if self.activation is not None:  # mae/mse compare the model's outputs
            out = self.activation.forward(out.clone())
        if y.dtype == torch.int64:
            y = torch.zeros_like(out).scatter_(-1, y, 1.0)
        e = out - y
        per = e.abs_() if self.name == "mae" else e.square_()
        return per.sum(-1) / out.shape[-1]


def masked_sum(rows: Tensor, valid: Tensor | None, into: Tensor) -> None:
    """into [K] ← Σₙ rows·valid: each member's sum over its real rows (valid [K, n] 0/1;
    None: every row is real). Without the mask the sum is the same, bit for bit (×1 is
    exact, the reduction the same), one op fewer."""
    if valid is None:
        torch.sum(rows, dim=1, dtype=into.dtype, out=into)
    else:
        torch.sum(rows * valid, dim=1, out=into)
