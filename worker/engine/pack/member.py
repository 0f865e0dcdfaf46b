"""A member: one job's run inside a pack, with everything its solo run would keep.

Its weights and optimizer slots are rows of the pack's buffers while it trains (views,
`flat` [P] and `slots`), and its own tensors once it has stopped; its generators,
permutation, per-step sums, History and early-stopping state are its own throughout,
which is what lets it leave the pack (a checkpoint in the solo format) at any step.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from fitq.worker.engine.callbacks import EarlyStopping
from fitq.worker.engine.errors import TrainingError
from fitq.worker.engine.optimizers import Config
from fitq.worker.engine.pack.solo import FitConfig


class MemberStatus(enum.Enum):
    """Where a member stands after an epoch (`EpochResult.status`)."""

    TRAINING = "continue"  # it trains in the next round
    FINISHED = "finished"  # it reached its epochs
    EARLY_STOPPED = "early_stopped"  # its early stopping ended it
    FAILED = "failed"  # a NaN/Inf loss: `EpochResult.error` says where


@dataclass(frozen=True)
class EpochResult:
    """A member's epoch as `Pack.run_epoch` reports it: `epoch` (1-based) and its History
    row `logs` (Keras names plus seconds and samples_per_second; empty when it failed),
    its `status` after the epoch, and for FAILED the `error` (its epoch and step)."""

    epoch: int
    logs: dict[str, float]
    status: MemberStatus
    error: TrainingError | None = None

    @property
    def done(self) -> bool:
        """The member trains no more: checkpoint or export it, then remove it."""
        return self.status is not MemberStatus.TRAINING


@dataclass(eq=False)  # a member is itself: compared by identity
class Member:
    id: str
    spec: dict[str, Any]
    seed: int
    fit: FitConfig
    optimizer: Config
    early_stopping: EarlyStopping | None
    n_train: int
    batch_size: int  # rows per step
    steps: int  # steps per epoch
    train_key: Hashable  # its rows in the pack's store: training rows first
    val_key: Hashable | None  # None: no validation; else rows [val_start, val_start + val_rows)
    val_start: int
    val_rows: int
    norm: tuple[Tensor, Tensor] | None  # fit.normalize's mean and std (float32, CPU)
    shuffle_gen: torch.Generator
    dropout_gen: torch.Generator
    flat: Tensor  # [P] its weights, the solo flat layout
    slots: dict[str, Tensor]  # its own optimizer slots, [P] each
    metrics: int  # metric columns in its per-step sums
    opt_step: int = 0
    epoch: int = 0  # epochs completed
    step: int = 0  # steps done in the current epoch
    perm: Tensor | None = None  # the current epoch's order (CPU); None between epochs
    epoch_stats: Tensor | None = None  # [steps, 1 + metrics] per-step sums of this epoch
    history: dict[str, list[float]] = field(default_factory=dict)
    stop_training: bool = False
    status: MemberStatus = MemberStatus.TRAINING
    error: TrainingError | None = None
    reported: bool = False  # its failure was in a run_epoch result
    epoch_seconds: float = 0.0
    train_seconds: float = 0.0
    # the round it is in (set by the pack while it trains)
    k: int = -1  # its row in the pack's buffers
    round_start: int = 0  # its step when the round began
    round_steps: int = 0  # steps it takes in the round
    round_cut: int | None = None  # round step from which it was taken out (failed or left)

    def steps_in_round(self, done: int) -> int:
        """Steps it has taken after `done` steps of the round."""
        cut = self.round_steps if self.round_cut is None else min(self.round_cut, self.round_steps)
        return min(done, cut)

    @property
    def done(self) -> bool:
        return self.epoch >= self.fit.epochs or self.stop_training

    def fail(self, step: int, loss: float) -> None:
        """Its loss was `loss` (NaN/Inf) at `step` of its current epoch: it fails, with
        the solo trainer's message."""
        epoch = self.epoch + 1
        self.status = MemberStatus.FAILED
        self.error = TrainingError(
            f"loss is {loss} at epoch {epoch}, step {step}: training diverged "
            "(try a lower learning rate or fit.normalize)",
            epoch=epoch,
            step=step,
        )

    def check_epoch(self) -> None:
        """Fail if any step of its epoch so far had a NaN/Inf loss (also the steps a
        round left unchecked when it was interrupted, or a checkpoint brought in)."""
        assert self.epoch_stats is not None
        finite = torch.isfinite(self.epoch_stats[:, 0])
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0, 0])
            self.fail(bad + 1, float(self.epoch_stats[bad, 0]))
