"""Keras 3's gradient clipping, applied to the gradient before weight decay and the
update (Keras' `_clip_gradients`), in place, on the device, without a host sync:

    clipnorm c         each variable's gradient g ← g·c / max(‖g‖, c)
    global_clipnorm c  every gradient g ← g·c·min(1/N, 1/c), N = ‖all gradients‖
                       (N infinite or NaN makes the step NaN, as in Keras)
    clipvalue c        g ← clip(g, −c, c)

A variable is one Keras weight (a kernel, a bias, a γ): the engine's parameters live in
one flat buffer, so the clip is told each variable's size, in buffer order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from fitq.worker.engine.optimizers.base import Config


class Clip:
    """The clipping of `config` (None from `of` when it clips nothing)."""

    def __init__(self, config: Config, sizes: Sequence[int]):
        self.clipnorm, self.clipvalue = config.clipnorm, config.clipvalue
        self.global_clipnorm = config.global_clipnorm
        self.sizes = list(sizes)

    @classmethod
    def of(cls, config: Config, sizes: Sequence[int]) -> Clip | None:
        clips = (config.clipnorm, config.clipvalue, config.global_clipnorm)
        return None if all(c is None for c in clips) else cls(config, sizes)

    def __call__(self, grads: list[Tensor]) -> None:
        """Clip `grads` in place: the flat gradients of the variables of `sizes`, in order
        (one tensor holding them all, or one tensor per variable)."""
        if self.clipvalue is not None:
            for g in grads:
                g.clamp_(-self.clipvalue, self.clipvalue)
        elif self.clipnorm is not None:
            c = self.clipnorm
            for v in self._variables(grads):
                norm = torch.linalg.vector_norm(v).clamp_(min=c)
                v.mul_(c).div_(norm)
        elif self.global_clipnorm is not None:
            c = self.global_clipnorm
            norms = [torch.linalg.vector_norm(g) for g in grads]
            norm = norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack(norms))
            scale = norm.reciprocal().clamp_(max=1 / c).mul_(c).add_(norm - norm)
            for g in grads:
                g.mul_(scale)

    def _variables(self, grads: list[Tensor]) -> list[Tensor]:
        """One view per variable: of the one flat tensor, or the tensors themselves."""
        if len(grads) == len(self.sizes) or not self.sizes:
            return [g.view(-1) for g in grads]
        (flat,) = grads
        return list(flat.view(-1).split(self.sizes))
