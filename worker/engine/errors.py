"""The engine's exceptions; a worker catches TrainingError to fail a job with its message.

TrainingError                 training cannot go on; `.epoch` and `.step` say where
│                             (1-based, the step inside its epoch; None when not tied
│                             to a step): a NaN/Inf loss, a checkpoint that does not
│                             match the run, a failure inside a training step
├── ConfigError (ValueError)  a model/compile/fit config the engine cannot build
└── DataError (ValueError)    arrays of the wrong shape or dtype, non-finite values,
                              labels out of range
"""

from __future__ import annotations


class TrainingError(Exception):
    """Training failed at a known epoch and step (1-based; None when not applicable)."""

    def __init__(self, message: str, *, epoch: int | None = None, step: int | None = None):
        super().__init__(message)
        self.message = message
        self.epoch = epoch
        self.step = step


class ConfigError(TrainingError, ValueError):
    """The model, compile or fit configuration is not one the engine can build."""


class DataError(TrainingError, ValueError):
    """The arrays do not fit the model: shape, dtype, non-finite values, label range."""
