"""Keras 3's EarlyStopping callback: config and state, updated at each epoch end.

    improvement:  current − min_delta > best  (mode max)
                  current + min_delta < best  (mode min)
    each epoch:   wait += 1; on improvement best ← current, wait ← 0;
                  otherwise stop once wait >= patience (never after the first epoch)

mode "auto" is max for accuracy, min for the loss, mae and mse. A monitor missing
from the epoch's logs (val_loss without validation data) never stops training, as
in Keras. With restore_best_weights the best epoch's weights (and normalization
buffers) are put back when training ends, stopped early or not (Keras 3).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from fitq.worker.engine.config import Checked, read
from fitq.worker.engine.errors import ConfigError

MODES = ("auto", "min", "max")


@dataclass
class EarlyStopping(Checked):
    """The callback; its init fields are exactly a normalized `fit.early_stopping`'s keys."""

    monitor: str
    min_delta: float
    patience: int
    mode: str
    restore_best_weights: bool
    # state
    best: float = field(init=False)
    wait: int = field(default=0, init=False)
    best_epoch: int = field(default=0, init=False)  # 1-based; 0 = none yet
    stopped_epoch: int = field(default=0, init=False)
    best_weights: dict[str, Tensor] | None = field(default=None, init=False)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> EarlyStopping | None:
        """The callback of a normalized `fit.early_stopping` (None: no early stopping)."""
        return None if spec is None else read(cls, spec, "fit.early_stopping")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        self.best = -math.inf if self.maximize else math.inf

    @property
    def maximize(self) -> bool:
        if self.mode != "auto":
            return self.mode == "max"
        return self.monitor.removeprefix("val_") in ("accuracy", "acc")

    def _is_improvement(self, current: float) -> bool:
        delta = abs(self.min_delta)
        if self.maximize:
            return current - delta > self.best
        return current + delta < self.best

    def update(self, epoch: int, logs: Mapping[str, float], weights: Mapping[str, Tensor]) -> bool:
        """Record epoch `epoch` (1-based); True when training should stop."""
        current = logs.get(self.monitor)
        if current is None:
            return False
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = _copy(weights)
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            if self.restore_best_weights:
                self.best_weights = _copy(weights)
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
        self.best, self.wait = float(state["best"]), int(state["wait"])
        self.best_epoch, self.stopped_epoch = int(state["best_epoch"]), int(state["stopped_epoch"])
        self.best_weights = best_weights


def _copy(weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: t.detach().clone() for k, t in weights.items()}
