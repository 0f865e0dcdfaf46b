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

from fitq.worker.engine.errors import ConfigError


@dataclass
class EarlyStopping:
    monitor: str = "val_loss"
    min_delta: float = 0.0
    patience: int = 0
    mode: str = "auto"
    restore_best_weights: bool = False
    # state
    best: float = field(init=False)
    wait: int = 0
    best_epoch: int = 0  # 1-based; 0 = none yet
    stopped_epoch: int = 0
    best_weights: dict[str, Tensor] | None = None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> EarlyStopping | None:
        if spec is None:
            return None
        known = {"monitor", "min_delta", "patience", "mode", "restore_best_weights"}
        es = cls(**{k: v for k, v in spec.items() if k in known and v is not None})
        if es.mode not in ("auto", "min", "max"):
            raise ConfigError(f"early_stopping mode must be auto, min or max, got {es.mode!r}")
        if not isinstance(es.patience, int) or es.patience < 0:
            raise ConfigError(
                f"early_stopping patience must be an integer >= 0, got {es.patience!r}"
            )
        return es

    def __post_init__(self):
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
