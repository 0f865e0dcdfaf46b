"""Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"): the sign of
an interpolated momentum. torch.optim has no Lion; the rule is the paper's Algorithm 2,
which is also Keras' Lion (tests/engine compares both)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
from torch import Tensor

from fitq.worker.engine.config import real
from fitq.worker.engine.optimizers.base import (
    Config,
    Rule,
    Scalar,
    State,
    Tensors,
    add_scaled_,
    decoupled_decay,
    scale_,
    zipped,
)


@dataclass(frozen=True)
class LionConfig(Config):
    """The paper's rule (= Keras' Lion):

        p ← p − lr·wd·p                 (decoupled decay, the paper's λ)
        c ← β₁·m + (1 − β₁)·g
        p ← p − lr·sign(c)
        m ← β₂·m + (1 − β₂)·g

    Keras names: learning_rate, beta_1 (0 < β₁ ≤ 1: at 0 Lion is signSGD, which Keras
    refuses), beta_2, weight_decay (decoupled, as the paper and Keras 3).
    """

    beta_1: Annotated[float, real(gt=0, le=1)]
    beta_2: Annotated[float, real(ge=0, lt=1)]
    name: ClassVar[str] = "lion"


def lion_slots(cfg: LionConfig) -> tuple[str, ...]:
    return ("exp_avg",)


def lion_scalars(cfg: LionConfig, state: State, lr: float) -> tuple[float, ...]:
    """(lr, the decoupled decay factor)."""
    return lr, decoupled_decay(lr, cfg.weight_decay)


def lion_update(
    cfg: LionConfig,
    state: State,
    params: list[Tensor],
    grads: list[Tensor],
    s: tuple[float, ...],
    work: list[Tensor] | None = None,
) -> None:
    lr, decay = s
    b1, b2 = cfg.beta_1, cfg.beta_2
    for i, (p, g, m) in enumerate(zipped(params, grads, state.slots["exp_avg"])):
        if cfg.weight_decay:
            p.mul_(decay)
        c = torch.mul(m, b1, out=work[i] if work else None).add_(g, alpha=1 - b1)
        p.add_(c.sign_(), alpha=-lr)
        m.mul_(b2).add_(g, alpha=1 - b2)


def lion_update_foreach(
    cfg: LionConfig, state: State, params: list[Tensor], grads: Tensors, s: tuple[Scalar, ...]
) -> None:
    lr, decay = s
    b1, b2 = cfg.beta_1, cfg.beta_2
    m = state.slots["exp_avg"]
    if cfg.weight_decay:
        scale_(params, decay)
    c = torch._foreach_mul(m, b1)
    torch._foreach_add_(c, grads, alpha=1 - b1)
    torch._foreach_sign_(c)
    add_scaled_(params, c, -lr)
    torch._foreach_mul_(m, b2)
    torch._foreach_add_(m, grads, alpha=1 - b2)


LION = Rule(LionConfig, lion_slots, lion_scalars, lion_update, lion_update_foreach)
