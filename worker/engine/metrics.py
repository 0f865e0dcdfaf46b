"""Metrics, Keras names: accuracy (its kind chosen as Keras does), mae, mse.

Like the losses, a metric returns the *sum* over the batch of a per-sample value
(written into a 0-d tensor `into`), so an epoch's value is a mean weighted by
batch size. Accuracy's kind follows Keras 3's choice from shapes: one output
unit → binary (threshold 0.5 on probabilities, 0 on logits); class-index targets
→ sparse categorical; otherwise categorical (argmax against argmax).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fitq.worker.engine.activations import Activation
from fitq.worker.engine.errors import ConfigError


class Metric:
    name = ""

    def total(
        self, out: Tensor, y: Tensor, into: Tensor, logits: bool, activation: Activation | None
    ) -> None:
        """Write Σₙ metric(n) into `into`. `logits`: `out` are logits (the loss takes them
        from_logits); `activation`: the final activation fused into the loss, which turns
        `out` into the model's outputs (None when not fused)."""
        raise NotImplementedError


class Accuracy(Metric):
    name = "accuracy"

    def total(
        self, out: Tensor, y: Tensor, into: Tensor, logits: bool, activation: Activation | None
    ) -> None:
        if out.shape[1] == 1:  # binary
            threshold = 0.0 if logits else 0.5
            hit = (out > threshold).to(y.dtype) == y
            torch.sum(hit, dim=(0, 1), dtype=into.dtype, out=into)
        elif y.dtype == torch.int64:  # sparse categorical
            torch.sum(out.argmax(dim=1) == y.view(-1), dim=0, dtype=into.dtype, out=into)
        else:  # categorical
            hit = out.argmax(dim=1) == y.argmax(dim=1)
            torch.sum(hit, dim=0, dtype=into.dtype, out=into)


class _Elementwise(Metric):
    def total(
        self, out: Tensor, y: Tensor, into: Tensor, logits: bool, activation: Activation | None
    ) -> None:
        if activation is not None:
            out = activation.forward(out.clone())
        if y.dtype == torch.int64:  # class indices: compare with one-hot rows
            y = torch.zeros_like(out).scatter_(1, y, 1.0)
        e = out - y
        per = self._elementwise(e)
        torch.div(per.sum(), out.shape[1], out=into)

    def _elementwise(self, e: Tensor) -> Tensor:
        raise NotImplementedError


class MAE(_Elementwise):
    name = "mae"

    def _elementwise(self, e: Tensor) -> Tensor:
        return e.abs_()


class MSE(_Elementwise):
    name = "mse"

    def _elementwise(self, e: Tensor) -> Tensor:
        return e.square_()


METRICS: dict[str, type[Metric]] = {cls.name: cls for cls in (Accuracy, MAE, MSE)}


def get(name: str, where: str = "compile.metrics") -> Metric:
    """The metric a normalized spec names (the service resolves `acc` and Keras' names)."""
    cls = METRICS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(f"{where}: unknown metric {name!r}")
    return cls()
