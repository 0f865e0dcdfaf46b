"""fitq's training engine: dense networks trained on torch tensors with hand-written
forward, backward and optimizer updates (no autograd), Keras semantics.

Pure computation: it imports torch, numpy and safetensors, never the service. It takes
the normalized spec as it is (docs/spec-contract.md). See docs/engine.md for the
modules, the API the worker uses and the choices made.
"""

from fitq.worker.engine.errors import ConfigError, DataError, TrainingError
from fitq.worker.engine.model import Model, Predictor, default_device, load_model, load_predictor
from fitq.worker.engine.trainer import Trainer

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
