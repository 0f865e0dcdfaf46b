"""SGD, with momentum and Nesterov momentum: torch.optim.SGD's rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
from torch import Tensor

from fitq.worker.engine.config import real
from fitq.worker.engine.errors import ConfigError
from fitq.worker.engine.optimizers.base import (
    Config,
    Rule,
    Scalar,
    State,
    Tensors,
    add_scaled_,
    learning_rate_only,
    zipped,
)


@dataclass(frozen=True)
class SGDConfig(Config):
    """torch.optim.SGD with dampening 0:

        g ← g + wd·p
        b ← g (first step),  b ← μ·b + g (later)
        g ← g + μ·b (nesterov)  or  g ← b
        p ← p − lr·g

    Keras → torch: learning_rate → lr, momentum → momentum, nesterov → nesterov,
    weight_decay → weight_decay (L2 on the gradient). Keras' own momentum form
    (v ← μv − lr·g; p ← p + v) gives the same iterates for a constant learning rate.
    """

    momentum: Annotated[float, real(ge=0, lt=1)]
    nesterov: bool
    name: ClassVar[str] = "sgd"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.nesterov and self.momentum == 0:
            raise ConfigError("nesterov needs momentum > 0")


def sgd_slots(cfg: SGDConfig) -> tuple[str, ...]:
    return ("momentum_buffer",) if cfg.momentum else ()


def sgd_update(
    cfg: SGDConfig,
    state: State,
    params: list[Tensor],
    grads: list[Tensor],
    s: tuple[float, ...],
    work: list[Tensor] | None = None,
) -> None:
    (lr,) = s
    mu, wd = cfg.momentum, cfg.weight_decay
    for i, (p, g) in enumerate(zipped(params, grads)):
        if wd:
            g = g.add(p, alpha=wd)
        if mu:
            b = state.slots["momentum_buffer"][i]
            if state.step == 1:
                b.copy_(g)
            else:
                b.mul_(mu).add_(g)
            g = g.add(b, alpha=mu) if cfg.nesterov else b
        p.add_(g, alpha=-lr)


def sgd_update_foreach(
    cfg: SGDConfig, state: State, params: list[Tensor], grads: Tensors, s: tuple[Scalar, ...]
) -> None:
    (lr,) = s
    mu, wd = cfg.momentum, cfg.weight_decay
    if wd:
        grads = torch._foreach_add(grads, params, alpha=wd)
    if mu:
        bufs = state.slots["momentum_buffer"]
        if state.step == 1:
            torch._foreach_copy_(bufs, grads)
        else:
            torch._foreach_mul_(bufs, mu)
            torch._foreach_add_(bufs, grads)
        grads = torch._foreach_add(grads, bufs, alpha=mu) if cfg.nesterov else bufs
    add_scaled_(params, grads, -lr)


SGD = Rule(SGDConfig, sgd_slots, learning_rate_only, sgd_update, sgd_update_foreach)
