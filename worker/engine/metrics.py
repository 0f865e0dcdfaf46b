"""Metrics, Keras' names and History keys: accuracy (its kind chosen as Keras does),
binary/categorical/sparse categorical accuracy, top-k accuracies, precision, recall,
auc, mae, mse, root_mean_squared_error.

A metric writes per-step sums into its `width` cells of the step's row of sums (a 0-d
tensor when `width` is 1, else a 1-D view), and `result(sums, n)` turns the epoch's
summed cells into its value. For a mean metric the cell is Σₙ metric(n) and the result
that ÷ n, Keras' batch-size-weighted mean. Keras' stateful metrics (precision, recall,
auc, root_mean_squared_error) keep counts instead, and the result is computed from the
epoch's accumulated counts, as Keras' `result()` does — not a mean of batch values.

`accuracy`'s kind follows Keras 3's choice from shapes: one output unit → binary
(threshold 0.5 on probabilities, 0 on logits); class-index targets → sparse categorical;
otherwise categorical (argmax against argmax). The other metrics read the model's
outputs (the fused final activation applied) as Keras' metrics do, thresholds included.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from fitq.worker.engine.activations import Activation
from fitq.worker.engine.errors import ConfigError

AUC_THRESHOLDS = 200  # Keras' AUC default num_thresholds
TOP_K = 5  # Keras' top-k accuracies' default k
THRESHOLD = 0.5  # Keras' binary_accuracy, precision and recall default threshold


class Metric:
    name = ""
    width = 1  # cells of per-step sums

    def total(
        self, out: Tensor, y: Tensor, into: Tensor, logits: bool, activation: Activation | None
    ) -> None:
        """Write this batch's sums into `into`. `logits`: `out` are logits (the loss takes
        them from_logits); `activation`: the final activation fused into the loss, which
        turns `out` into the model's outputs (None when not fused)."""
        raise NotImplementedError

    def result(self, sums: Sequence[float], n: int) -> float:
        """The epoch's value from its summed cells over `n` rows."""
        return sums[0] / n


def _outputs(out: Tensor, activation: Activation | None) -> Tensor:
    """What the model outputs: `out` with the fused final activation applied."""
    return out if activation is None else activation.forward(out.clone())


def _onehot(y: Tensor, like: Tensor) -> Tensor:
    """Class indices [n, 1] as one-hot rows like `like`; float targets as they are."""
    return torch.zeros_like(like).scatter_(1, y, 1.0) if y.dtype == torch.int64 else y


def _count(hit: Tensor, into: Tensor) -> None:
    torch.sum(hit, dim=tuple(range(hit.dim())), dtype=into.dtype, out=into)


# ------------------------------------------------------------------ accuracies


class Accuracy(Metric):
    name = "accuracy"

    def total(
        self, out: Tensor, y: Tensor, into: Tensor, logits: bool, activation: Activation | None
    ) -> None:
        if out.shape[1] == 1:  # binary
            threshold = 0.0 if logits else 0.5
            _count((out > threshold).to(y.dtype) == y, into)
        elif y.dtype == torch.int64:  # sparse categorical
            _count(out.argmax(dim=1) == y.view(-1), into)
        else:  # categorical
            _count(out.argmax(dim=1) == y.argmax(dim=1), into)


class BinaryAccuracy(Metric):
    """Per row, the fraction of outputs with [output > 0.5] equal to the target."""

    name = "binary_accuracy"

    def total(
        self, out: Tensor, y: Tensor, into: Tensor, logits: bool, activation: Activation | None
    ) -> None:
        p = _outputs(out, activation)
        hit = (p > THRESHOLD).to(y.dtype) == y
        torch.div(hit.sum(dtype=into.dtype), p.shape[1], out=into)


class CategoricalAccuracy(Metric):
    name = "categorical_accuracy"

    def total(
        self, out: Tensor, y: Tensor, into: Tensor, logits: bool, activation: Activation | None
    ) -> None:
        # argmax is unchanged by softmax; any other fused activation is monotonic too
        _count(out.argmax(dim=1) == y.argmax(dim=1), into)


class SparseCategoricalAccuracy(Metric):
    name = "sparse_categorical_accuracy"

    def total(
        self, out: Tensor, y: Tensor, into: Tensor, logits: bool, activation: Activation | None
    ) -> None:
        _count(out.argmax(dim=1) == y.view(-1), into)


class TopKCategoricalAccuracy(Metric):
    """The target class's output is at least the k-th largest (ties count in, as
    Keras' in_top_k); with fewer than k outputs every class is in the top k."""

    name = "top_k_categorical_accuracy"

    def _target(self, y: Tensor) -> Tensor:
        return y.argmax(dim=1, keepdim=True)

    def total(
        self, out: Tensor, y: Tensor, into: Tensor, logits: bool, activation: Activation | None
    ) -> None:
        p = _outputs(out, activation)
        k = min(TOP_K, p.shape[1])
        kth = p.topk(k, dim=1).values[:, -1:]
        _count(p.gather(1, self._target(y)) >= kth, into)


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    name = "sparse_top_k_categorical_accuracy"

    def _target(self, y: Tensor) -> Tensor:
        return y


# ------------------------------------------------------------------ mean errors


class _Elementwise(Metric):
    def total(
        self, out: Tensor, y: Tensor, into: Tensor, logits: bool, activation: Activation | None
    ) -> None:
        p = _outputs(out, activation)
        e = p - _onehot(y, p)
        torch.div(self._elementwise(e).sum(), p.shape[1], out=into)

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


class RootMeanSquaredError(Metric):
    """Keras' stateful RMSE: √(Σ squared errors ÷ their count) over the whole epoch.
    Cells: [Σ (p − y)², the number of outputs]."""

    name, width = "root_mean_squared_error", 2

    def total(
        self, out: Tensor, y: Tensor, into: Tensor, logits: bool, activation: Activation | None
    ) -> None:
        p = _outputs(out, activation)
        torch.sum((p - _onehot(y, p)).square_(), dim=(0, 1), out=into[0])
        into[1].fill_(p.numel())

    def result(self, sums: Sequence[float], n: int) -> float:
        return (sums[0] / sums[1]) ** 0.5 if sums[1] else 0.0


# ------------------------------------------------------------------ confusion counts


def _divide(a: float, b: float) -> float:
    return a / b if b else 0.0  # Keras' divide_no_nan


class Precision(Metric):
    """TP / (TP + FP) over every output, positive = [output > 0.5], actual = [y ≠ 0].
    Cells: [TP, predicted positives]."""

    name, width = "precision", 2

    def _reference(self, actual: Tensor, predicted: Tensor) -> Tensor:
        return predicted

    def total(
        self, out: Tensor, y: Tensor, into: Tensor, logits: bool, activation: Activation | None
    ) -> None:
        p = _outputs(out, activation)
        predicted, actual = p > THRESHOLD, y != 0
        _count(predicted & actual, into[0])
        _count(self._reference(actual, predicted), into[1])

    def result(self, sums: Sequence[float], n: int) -> float:
        return _divide(sums[0], sums[1])


class Recall(Precision):
    """TP / (TP + FN). Cells: [TP, actual positives]."""

    name = "recall"

    def _reference(self, actual: Tensor, predicted: Tensor) -> Tensor:
        return actual


class AUC(Metric):
    """Keras' AUC with its defaults: ROC, 200 thresholds evenly spaced on [0, 1] (−ε
    and 1 + ε at the ends), interpolation (the trapezoidal rule), over every output.

    As Keras (its bucketed path for evenly spaced thresholds): outputs clipped to
    [0, 1] fall in bucket ⌈p·199⌉ − 1 (at least 0), and the cells hold, per bucket, the
    count of actual positives and of actual negatives: [positives ×200, negatives ×200].
    At the epoch's end TP(t) and FP(t) are the counts above each threshold t, and the
    area is Σ (FPR[t] − FPR[t+1])·(TPR[t] + TPR[t+1])/2. Counts are exact; the final
    sum is in float64 where Keras' is in float32 (a difference below 1e-6).
    """

    name, width = "auc", 2 * AUC_THRESHOLDS

    def total(
        self, out: Tensor, y: Tensor, into: Tensor, logits: bool, activation: Activation | None
    ) -> None:
        p = _outputs(out, activation).reshape(-1).to(torch.float32)
        p = p.nan_to_num(nan=0.0).clamp_(0.0, 1.0)  # a diverged run fails on its loss, later
        bucket = (p * (AUC_THRESHOLDS - 1)).ceil_().sub_(1).clamp_(min=0).long()
        positive = (y != 0).reshape(-1).to(into.dtype)
        into.zero_()
        into[:AUC_THRESHOLDS].index_add_(0, bucket, positive)
        into[AUC_THRESHOLDS:].index_add_(0, bucket, 1.0 - positive)

    def result(self, sums: Sequence[float], n: int) -> float:
        t = AUC_THRESHOLDS
        counts = torch.tensor(list(sums), dtype=torch.float64)
        # counts above threshold i: the buckets i and up (a reversed cumulative sum)
        tp = counts[:t].flip(0).cumsum(0).flip(0)
        fp = counts[t:].flip(0).cumsum(0).flip(0)
        positives, negatives = float(counts[:t].sum()), float(counts[t:].sum())
        tpr = tp / positives if positives else torch.zeros_like(tp)
        fpr = fp / negatives if negatives else torch.zeros_like(fp)
        heights = (tpr[:-1] + tpr[1:]) / 2.0
        return float(((fpr[:-1] - fpr[1:]) * heights).sum())


METRICS: dict[str, type[Metric]] = {
    cls.name: cls
    for cls in (
        Accuracy,
        BinaryAccuracy,
        CategoricalAccuracy,
        SparseCategoricalAccuracy,
        TopKCategoricalAccuracy,
        SparseTopKCategoricalAccuracy,
        MAE,
        MSE,
        RootMeanSquaredError,
        Precision,
        Recall,
        AUC,
    )
}


def get(name: str, where: str = "compile.metrics") -> Metric:
    """The metric a normalized spec names (the service resolves `acc` and Keras' names)."""
    cls = METRICS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(f"{where}: unknown metric {name!r}")
    return cls()


def cells(row: Tensor, metrics: Sequence[Metric]) -> tuple[Tensor, ...]:
    """A step's row of sums [1 + Σ widths] as (the loss's 0-d cell, then each metric's
    cells: a 0-d view for width 1, a 1-D view otherwise)."""
    out, at = [row[0]], 1
    for m in metrics:
        out.append(row[at] if m.width == 1 else row[at : at + m.width])
        at += m.width
    return tuple(out)


def width(metrics: Sequence[Metric]) -> int:
    """The cells of a step's row: the loss's, then every metric's."""
    return 1 + sum(m.width for m in metrics)


def results(metrics: Sequence[Metric], sums: Sequence[float], n: int) -> dict[str, float]:
    """Each metric's epoch value from the summed row (the loss's cell first, skipped)."""
    out, at = {}, 1
    for m in metrics:
        out[m.name] = m.result(sums[at : at + m.width], n)
        at += m.width
    return out
