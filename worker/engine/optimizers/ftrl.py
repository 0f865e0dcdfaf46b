"""FTRL-Proximal (McMahan et al., 2013, "Ad Click Prediction: a View from the Trenches"),
as Keras implements it. torch.optim has no FTRL; the reference is Keras' Ftrl (with
its l2 shrinkage and β), which tests/engine compares step for step."""

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
    decoupled_decay,
    scale_,
    zipped,
)


@dataclass(frozen=True)
class FtrlConfig(Config):
    """Keras' Ftrl, P = learning_rate_power (≤ 0), n and z the accumulator and linear slots:

        p ← p − lr·wd·p                          (Keras 3's decoupled decay)
        g₂ ← g + 2·λ₂ₛ·p                          (l2 shrinkage)
        n' ← n + g²
        z ← z + g₂ − (n'^(−P) − n^(−P))/lr · p
        p ← (clip(z, −λ₁, λ₁) − z) / (n'^(−P)/lr + 2·(λ₂ + β/(2·lr)))
        n ← n'

    Keras names: learning_rate, learning_rate_power, initial_accumulator_value (n's
    start, > 0: Keras also takes 0, where a weight whose gradient is 0 — an always-zero
    feature — divides 0 by 0 unless λ₂ or β is set), l1_regularization_strength (λ₁),
    l2_regularization_strength (λ₂), l2_shrinkage_regularization_strength (λ₂ₛ), beta,
    weight_decay. It divides by the learning rate, so a schedule must never reach 0.
    """

    learning_rate_power: Annotated[float, real(le=0)]
    initial_accumulator_value: Annotated[float, real(gt=0)]
    l1_regularization_strength: Annotated[float, real(ge=0)]
    l2_regularization_strength: Annotated[float, real(ge=0)]
    l2_shrinkage_regularization_strength: Annotated[float, real(ge=0)]
    beta: Annotated[float, real(ge=0)]
    name: ClassVar[str] = "ftrl"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.schedule is not None and self.schedule.reaches_zero:
            raise ConfigError(
                f"ftrl divides by the learning rate, and this {self.schedule.name} "
                "schedule reaches 0 (a rate, alpha, end_learning_rate or warmup start of 0)"
            )


def ftrl_slots(cfg: FtrlConfig) -> tuple[str, ...]:
    return ("accumulator", "linear")


def ftrl_scalars(cfg: FtrlConfig, state: State, lr: float) -> tuple[float, ...]:
    """(1/lr, 2·(λ₂ + β/(2·lr)), the decoupled decay factor)."""
    l2 = cfg.l2_regularization_strength + cfg.beta / (2.0 * lr)
    return 1.0 / lr, 2 * l2, decoupled_decay(lr, cfg.weight_decay)


def ftrl_update(
    cfg: FtrlConfig,
    state: State,
    params: list[Tensor],
    grads: list[Tensor],
    s: tuple[float, ...],
    work: list[Tensor] | None = None,
) -> None:
    inv_lr, quadratic_l2, decay = s
    power, l1 = -cfg.learning_rate_power, cfg.l1_regularization_strength
    shrinkage = 2 * cfg.l2_shrinkage_regularization_strength
    slots = state.slots["accumulator"], state.slots["linear"]
    for p, g, n, z in zipped(params, grads, *slots):
        if cfg.weight_decay:
            p.mul_(decay)
        g2 = g.add(p, alpha=shrinkage) if shrinkage else g
        new = torch.addcmul(n, g, g)
        root_new = new.pow(power)
        sigma = root_new.sub(n.pow_(power)).mul_(inv_lr)
        z.add_(g2).sub_(sigma.mul_(p))
        quadratic = root_new.mul_(inv_lr).add_(quadratic_l2)
        p.copy_(torch.clamp(z, -l1, l1).sub_(z).div_(quadratic))
        n.copy_(new)


def ftrl_update_foreach(
    cfg: FtrlConfig, state: State, params: list[Tensor], grads: Tensors, s: tuple[Scalar, ...]
) -> None:
    inv_lr, quadratic_l2, decay = s
    power, l1 = -cfg.learning_rate_power, cfg.l1_regularization_strength
    shrinkage = 2 * cfg.l2_shrinkage_regularization_strength
    n, z = state.slots["accumulator"], state.slots["linear"]
    if cfg.weight_decay:
        scale_(params, decay)
    g2 = torch._foreach_add(grads, params, alpha=shrinkage) if shrinkage else grads
    new = torch._foreach_addcmul(n, grads, grads)
    root_new = torch._foreach_pow(new, power)
    sigma = torch._foreach_pow(n, power)
    torch._foreach_sub_(sigma, root_new)  # −(n'^(−P) − n^(−P))
    torch._foreach_mul_(sigma, inv_lr)
    torch._foreach_add_(z, g2)
    torch._foreach_addcmul_(z, sigma, params)
    torch._foreach_mul_(root_new, inv_lr)
    torch._foreach_add_(root_new, quadratic_l2)
    clipped = torch._foreach_clamp_min(z, -l1)
    torch._foreach_clamp_max_(clipped, l1)
    torch._foreach_sub_(clipped, z)
    torch._foreach_div_(clipped, root_new)
    torch._foreach_copy_(params, clipped)
    torch._foreach_copy_(n, new)


FTRL = Rule(FtrlConfig, ftrl_slots, ftrl_scalars, ftrl_update, ftrl_update_foreach)
