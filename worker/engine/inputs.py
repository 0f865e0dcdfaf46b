"""What a fit trains on: `fit`'s settings and the arrays, checked and on the device.

`prepare` takes the caller's arrays once: features checked (`model.check_features`),
Keras' validation split (the last fraction of the rows, before any shuffling), targets
in the form the loss takes (`targets`), fit.normalize's statistics applied to the
resident data. Class indices become int64 [n, 1] for the (sparse) categorical
losses (one-hot float [n, k] for `losses.ONE_HOT_TARGETS` given indices — a documented
convenience); everything else float32 [n, k] (`[n]` for one output unit).
An array that cannot be that is a DataError naming it ("y", "validation y").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import torch
from torch import Tensor

from fitq.worker.engine.config import Checked, count, real
from fitq.worker.engine.errors import DataError
from fitq.worker.engine.losses import BINARY_TARGETS, ONE_HOT_TARGETS
from fitq.worker.engine.model import check_features


@dataclass(frozen=True)
class FitConfig(Checked):
    """A normalized `spec["fit"]`; `batch_size` None is the whole training set."""

    epochs: int
    batch_size: Annotated[int | None, count(ge=1)]
    validation_split: Annotated[float, real(ge=0, lt=1)]  # the rows trained on must be ≥ 0
    shuffle: bool
    early_stopping: Mapping[str, Any] | None  # callbacks.EarlyStopping's keys
    reduce_lr_on_plateau: Mapping[str, Any] | None  # callbacks.ReduceLROnPlateau's keys
    normalize: bool

    def train_rows(self, n_rows: int, has_validation_data: bool) -> int:
        """Rows trained on: Keras' split keeps the first ⌊n·(1 − validation_split)⌋."""
        if has_validation_data or not self.validation_split:
            return n_rows
        return int(math.floor(n_rows * (1.0 - self.validation_split)))

    def steps(self, n_train: int) -> int:
        return 1 if self.batch_size is None else -(-n_train // self.batch_size)


@dataclass
class TrainingData:
    """A fit's arrays on the device; x and xv already normalized when fit.normalize is on."""

    x: Tensor  # [n_train, input_dim]
    y: Tensor  # targets(…) of the training rows
    xv: Tensor | None  # validation rows (the split's, or validation_data's)
    yv: Tensor | None
    norm: tuple[Tensor, Tensor] | None  # fit.normalize's (mean, std) on the device

    @property
    def n_train(self) -> int:
        return self.x.shape[0]


def prepare(
    x: Any,
    y: Any,
    validation_data: tuple[Any, Any] | None,
    fit: FitConfig,
    loss: str,
    dims: tuple[int, int],
    device: torch.device,
) -> TrainingData:
    """The arrays of one fit of a model with `dims` (inputs, outputs) trained with `loss`."""
    input_dim, k = dims
    xa = check_features(x, input_dim)
    n = xa.shape[0]
    n_train = fit.train_rows(n, validation_data is not None)
    if n_train < 1:
        raise DataError(f"validation_split leaves no training rows out of {n}")
    y_all = targets(y, n, "y", loss, k, device)
    xt, xv, yv = torch.from_numpy(xa[:n_train]).to(device), None, None
    if validation_data is not None:
        xva = check_features(validation_data[0], input_dim, "validation x")
        xv = torch.from_numpy(xva).to(device)
        yv = targets(validation_data[1], xva.shape[0], "validation y", loss, k, device)
    elif n_train < n:
        xv, yv = torch.from_numpy(xa[n_train:]).to(device), y_all[n_train:]
    norm = None
    if fit.normalize:
        mean, std = normalization(xa[:n_train])
        norm = (mean.to(device), std.to(device))
        xt = normalized(xt, norm)
        xv = normalized(xv, norm) if xv is not None else None
    return TrainingData(xt, y_all[:n_train], xv, yv, norm)


def normalized(x: Tensor, norm: tuple[Tensor, Tensor]) -> Tensor:
    """(x − mean) / std, a new tensor."""
    mean, std = norm
    return (x - mean).div_(std)


_CLASS_INDICES = ("sparse_categorical_crossentropy", *ONE_HOT_TARGETS)


def targets(y: Any, n: int, what: str, loss: str, k: int, device: torch.device) -> Tensor:
    """`y` for `n` rows of a model with `k` outputs trained with `loss`, on `device`."""
    arr = np.asarray(y)
    if arr.shape[0] != n:
        raise DataError(f"{what} has {arr.shape[0]} rows but x has {n}")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{what} is not numeric (dtype {arr.dtype})")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{what} holds NaN or Inf values")
    if loss in _CLASS_INDICES and (
        arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1 and k > 1)
    ):
        labels = arr.reshape(-1)
        if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
            raise DataError(f"{what} holds non-integer class labels")
        labels = labels.astype(np.int64)
        if labels.min() < 0 or labels.max() >= k:
            raise DataError(
                f"{what} labels must be in [0, {k - 1}] for {k} output units, "
                f"got {labels.min()}..{labels.max()}"
            )
        t = torch.from_numpy(labels).view(-1, 1)
        if loss in ONE_HOT_TARGETS:
            t = torch.zeros(n, k).scatter_(1, t, 1.0)
        return t.to(device)
    if loss == "sparse_categorical_crossentropy":
        raise DataError(f"{what} must be class indices of shape [n], got {list(arr.shape)}")
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != k:
        raise DataError(
            f"{what} must have shape [n, {k}] (or [n] for one unit), got {list(arr.shape)}"
        )
    if loss in BINARY_TARGETS and not ((arr >= 0) & (arr <= 1)).all():
        raise DataError(f"{what} must hold labels in [0, 1] for {loss}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not arr.flags.writeable:  # a memory-mapped dataset: torch wants writable memory
        arr = arr.copy()
    return torch.from_numpy(arr).to(device)


def normalization(rows: np.ndarray) -> tuple[Tensor, Tensor]:
    """fit.normalize's statistics of the training rows: the mean and the population std,
    computed in float64, a std of 0 taken as 1; float32 CPU tensors [features]."""
    wide = rows.astype(np.float64)
    mean, std = wide.mean(axis=0), wide.std(axis=0)
    std[std == 0] = 1.0
    return torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(std.astype(np.float32))
