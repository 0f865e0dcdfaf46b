"""fitq's training engine: dense networks trained on torch tensors with hand-written
forward, backward and optimizer updates (no autograd), Keras semantics.

Pure computation: it imports torch, numpy and safetensors, never the service. It takes
the normalized spec as it is (docs/spec-contract.md). See docs/engine.md for the
modules, the API the worker uses and the choices made.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fitq.worker.engine.errors import ConfigError, DataError, TrainingError
    from fitq.worker.engine.model import (
        Model,
        Predictor,
        default_device,
        load_model,
        load_predictor,
    )
    from fitq.worker.engine.trainer import Trainer

_HOMES = {
    "ConfigError": "errors",
    "DataError": "errors",
    "TrainingError": "errors",
    "Model": "model",
    "Predictor": "model",
    "default_device": "model",
    "load_model": "model",
    "load_predictor": "model",
    "Trainer": "trainer",
}
"""Where each public name lives. Imported on first use (PEP 562), so that importing a
torch-free module of the engine (``pack.compat``, which the API uses at submit) does
not import torch through this package."""

__all__ = [
    "ConfigError",
    "DataError",
    "Model",
    "Predictor",
    "Trainer",
    "TrainingError",
    "default_device",
    "load_model",
    "load_predictor",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
