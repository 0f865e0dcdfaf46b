"""`spec["compile"]` built on a model: its loss, metrics and optimizer.

Where the final activation has a fused form with the loss (softmax or sigmoid with
their cross-entropies), the model's last activation is folded into the loss, which
then reads logits: `dZ = (p − y)/N`, computed with log-sum-exp, never log(0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from fitq.worker.engine import losses, metrics, optimizers
from fitq.worker.engine.config import Checked, read
from fitq.worker.engine.model import Model

FUSABLE = {
    ("sparse_categorical_crossentropy", "softmax"),
    ("categorical_crossentropy", "softmax"),
    ("binary_crossentropy", "sigmoid"),
}
"""(loss, final activation) pairs whose fused form the engine computes from logits."""


@dataclass(frozen=True)
class CompileConfig(Checked):
    """A normalized `spec["compile"]`: optimizer, loss and metrics, each as the service
    normalized it (objects with every key, canonical names)."""

    optimizer: Mapping[str, Any]
    loss: Mapping[str, Any]
    metrics: list[str]


def build(
    compile: Mapping[str, Any], model: Model, device: torch.device
) -> tuple[Any, list[Any], optimizers.Optimizer]:
    """The loss (fused with the model's final activation where it can be), the metrics
    and the optimizer over the model's one flat parameter tensor."""
    config = read(CompileConfig, compile, "compile")
    loss = losses.get(config.loss)
    if (loss.name, model.final_activation()) in FUSABLE and not loss.from_logits:
        model.fuse_final_activation()
        loss.from_logits = True
    on_cuda = device.type == "cuda"
    optimizer = optimizers.Optimizer(
        optimizers.make_config(config.optimizer),
        [model.flat_params],
        # one flat tensor: on the CPU the per-tensor path is the fast one (no foreach
        # kernels there); on CUDA the foreach path is what a graph captures, reading
        # the step's scalars (learning rate, …) from device tensors, eager or replayed
        foreach=on_cuda,
        sizes=[t.numel() for t in model.params],  # Keras' variables (clipnorm)
        device_scalars=device if on_cuda else None,
    )
    return loss, [metrics.get(m) for m in config.metrics], optimizer
