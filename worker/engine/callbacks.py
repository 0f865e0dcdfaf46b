"""Keras 3's epoch-end callbacks of the fit spec: EarlyStopping and ReduceLROnPlateau.

Both watch one History key (`monitor`) at each epoch's end:

    improvement:  current − min_delta > best  (mode max)
                  current + min_delta < best  (mode min); the first value always is

`mode: "auto"` maximizes accuracies, precision, recall and AUC (Keras' metrics whose
direction is "up") and minimizes the rest (the losses, errors). A monitor missing from
the epoch's logs does nothing, as in Keras (the service refuses such a spec anyway).

EarlyStopping — `wait` counts epochs since the last improvement; training stops once
`wait ≥ patience` (never after the first epoch). Epochs up to `start_from_epoch` are not
watched. With a `baseline`, an improvement resets `wait` only if it also beats the
baseline. With `restore_best_weights` the best epoch's weights (and normalization
buffers) are put back when training ends, stopped early or not.

ReduceLROnPlateau — after `patience` epochs without improvement, outside the `cooldown`
epochs that follow a reduction, the learning rate becomes max(lr·factor, min_lr), kept
in float32 as Keras keeps it (nothing happens once lr ≤ min_lr). The epoch's logs then
carry `learning_rate`, the rate the epoch trained with, as Keras 3's do.

Each callback's init fields are exactly its normalized spec's keys; its state (a JSON
object, and the best weights) goes into the checkpoint, so a resumed run decides alike.
TerminateOnNaN has no engine part: every fit stops at the first non-finite loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from torch import Tensor

from fitq.worker.engine.config import Checked, count, read, real
from fitq.worker.engine.errors import ConfigError
from fitq.worker.engine.optimizers import Optimizer

MODES = ("auto", "min", "max")
_RISING = ("acc", "precision", "recall", "auc")  # and every "…accuracy"


def maximizes(monitor: str) -> bool:
    """mode "auto": whether Keras maximizes this History key."""
    base = monitor.removeprefix("val_")
    return base.endswith("accuracy") or base in _RISING


@dataclass
class _Monitor(Checked):
    monitor: str
    min_delta: float
    mode: str

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    @property
    def maximize(self) -> bool:
        return self.mode == "max" if self.mode != "auto" else maximizes(self.monitor)

    def _is_improvement(self, current: float, reference: float | None) -> bool:
        if reference is None:
            return True
        delta = abs(self.min_delta)
        return current - delta > reference if self.maximize else current + delta < reference


@dataclass
class EarlyStopping(_Monitor):
    """The callback; its init fields are exactly a normalized `fit.early_stopping`'s keys."""

    patience: Annotated[int, count(ge=0)]
    baseline: Annotated[float | None, real()]
    restore_best_weights: bool
    start_from_epoch: Annotated[int, count(ge=0)]
    # state
    best: float | None = field(default=None, init=False)
    wait: int = field(default=0, init=False)
    best_epoch: int = field(default=0, init=False)  # 1-based; 0 = none yet
    stopped_epoch: int = field(default=0, init=False)
    best_weights: dict[str, Tensor] | None = field(default=None, init=False)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> EarlyStopping | None:
        """The callback of a normalized `fit.early_stopping` (None: no early stopping)."""
        return None if spec is None else read(cls, spec, "fit.early_stopping")

    def update(self, epoch: int, logs: Mapping[str, float], weights: Mapping[str, Tensor]) -> bool:
        """Record epoch `epoch` (1-based); True when training should stop."""
        current = logs.get(self.monitor)
        if current is None or epoch <= self.start_from_epoch:
            return False
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = _copy(weights)
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = _copy(weights)
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return False
        if self.wait >= self.patience and epoch > 1:
            self.stopped_epoch = epoch
            return True
        return False

    def state(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "wait": self.wait,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
        }

    def load_state(self, state: Mapping[str, Any], best_weights: dict[str, Tensor] | None) -> None:
        self.best = _number(state["best"])
        self.wait = int(state["wait"])
        self.best_epoch, self.stopped_epoch = int(state["best_epoch"]), int(state["stopped_epoch"])
        self.best_weights = best_weights


@dataclass
class ReduceLROnPlateau(_Monitor):
    """The callback; its init fields are exactly a normalized `fit.reduce_lr_on_plateau`'s."""

    factor: Annotated[float, real(gt=0, lt=1)]
    patience: Annotated[int, count(ge=0)]
    cooldown: Annotated[int, count(ge=0)]
    min_lr: Annotated[float, real(ge=0)]
    # state
    best: float | None = field(default=None, init=False)
    wait: int = field(default=0, init=False)
    cooldown_counter: int = field(default=0, init=False)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> ReduceLROnPlateau | None:
        """The callback of a normalized `fit.reduce_lr_on_plateau` (None: none)."""
        return None if spec is None else read(cls, spec, "fit.reduce_lr_on_plateau")

    def log(self, logs: dict[str, float], optimizer: Optimizer) -> None:
        """Add the rate this epoch trained with to its logs (Keras 3 does)."""
        assert optimizer.learning_rate is not None
        logs["learning_rate"] = optimizer.learning_rate

    def update(self, logs: Mapping[str, float], optimizer: Optimizer) -> None:
        """Record an epoch's logs; lower the optimizer's learning rate on a plateau."""
        current = logs.get(self.monitor)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best, self.wait = current, 0
            return
        if self.cooldown_counter > 0:
            return
        self.wait += 1
        rate = optimizer.learning_rate
        assert rate is not None  # the spec refuses this callback with a schedule
        if self.wait >= self.patience and rate > np.float32(self.min_lr):
            optimizer.set_learning_rate(float(np.float32(max(rate * self.factor, self.min_lr))))
            self.cooldown_counter, self.wait = self.cooldown, 0

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.best = _number(state["best"])
        self.wait, self.cooldown_counter = int(state["wait"]), int(state["cooldown_counter"])


def _number(value: Any) -> float | None:
    """A `best` from a checkpoint: null, or a number (±inf from an older checkpoint's
    start, which any finite value improves on, as it does on null)."""
    return None if value is None or abs(float(value)) == float("inf") else float(value)


def _copy(weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: t.detach().clone() for k, t in weights.items()}
