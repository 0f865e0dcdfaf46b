"""Adam and its kin, torch.optim's rules: Adam/AdamW, Adamax (the ∞-norm), NAdam
(Nesterov momentum). t is the step, 1-based; the bias corrections are computed on the
host in double precision, as torch computes them, and reach the update as scalars."""

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
    addcdiv_scaled_,
    decoupled_decay,
    root_plus,
    scale_,
    zipped,
)

# -------------------------------------------------------------------- Adam, AdamW


@dataclass(frozen=True)
class AdamConfig(Config):
    """torch.optim.Adam (adamw: torch.optim.AdamW):

        p ← p − lr·wd·p           (adamw: decoupled decay)
        g ← g + wd·p              (adam: L2 on the gradient)
        m ← β₁·m + (1 − β₁)·g
        v ← β₂·v + (1 − β₂)·g²
        v̂ ← max(v̂, v)            (amsgrad; the root below then uses v̂)
        p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)

    Keras → torch: learning_rate → lr, beta_1/beta_2 → betas, epsilon → eps
    (torch's ε, added after the bias-corrected root; Keras adds its ε̂ to the
    uncorrected root), amsgrad → amsgrad, weight_decay → weight_decay.
    """

    beta_1: Annotated[float, real(ge=0, lt=1)]
    beta_2: Annotated[float, real(ge=0, lt=1)]
    epsilon: Annotated[float, real(gt=0)]
    amsgrad: bool
    name: ClassVar[str] = "adam"

    @property
    def decoupled(self) -> bool:
        return False


@dataclass(frozen=True)
class AdamWConfig(AdamConfig):
    __doc__ = AdamConfig.__doc__
    name: ClassVar[str] = "adamw"

    @property
    def decoupled(self) -> bool:
        return True


def adam_slots(cfg: AdamConfig) -> tuple[str, ...]:
    return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if cfg.amsgrad else ())


def _adam_scalars(cfg: AdamConfig, step: int, lr: float | None = None) -> tuple[float, float]:
    """(step size lr/(1 − β₁ᵗ), √(1 − β₂ᵗ)), in double precision as torch computes them;
    `lr` None: the config's constant learning rate."""
    lr = cfg.constant_learning_rate if lr is None else lr
    bias_correction1 = 1 - cfg.beta_1**step
    bias_correction2 = 1 - cfg.beta_2**step
    return lr / bias_correction1, bias_correction2**0.5


def adam_scalars(cfg: AdamConfig, state: State, lr: float) -> tuple[float, ...]:
    """(step size, √(1 − β₂ᵗ), the decoupled decay factor)."""
    return (*_adam_scalars(cfg, state.step, lr), decoupled_decay(lr, cfg.weight_decay))


def adam_update(
    cfg: AdamConfig,
    state: State,
    params: list[Tensor],
    grads: list[Tensor],
    s: tuple[float, ...],
    work: list[Tensor] | None = None,
) -> None:
    step_size, bc2_sqrt, decay = s
    wd = cfg.weight_decay
    for i, (p, g) in enumerate(zipped(params, grads)):
        if wd and cfg.decoupled:
            p.mul_(decay)
        elif wd:
            g = g.add(p, alpha=wd)
        m, v = state.slots["exp_avg"][i], state.slots["exp_avg_sq"][i]
        m.lerp_(g, 1 - cfg.beta_1)
        v.mul_(cfg.beta_2).addcmul_(g, g, value=1 - cfg.beta_2)
        if cfg.amsgrad:
            vmax = state.slots["max_exp_avg_sq"][i]
            torch.maximum(vmax, v, out=vmax)
            v = vmax
        denom = root_plus(v, cfg.epsilon, work[i] if work else None, 1 / bc2_sqrt)
        p.addcdiv_(m, denom, value=-step_size)


def adam_update_foreach(
    cfg: AdamConfig, state: State, params: list[Tensor], grads: Tensors, s: tuple[Scalar, ...]
) -> None:
    step_size, bc2_sqrt, decay = s
    wd = cfg.weight_decay
    m, v = state.slots["exp_avg"], state.slots["exp_avg_sq"]
    if wd and cfg.decoupled:
        scale_(params, decay)
    elif wd:
        grads = torch._foreach_add(grads, params, alpha=wd)
    torch._foreach_lerp_(m, grads, 1 - cfg.beta_1)
    torch._foreach_mul_(v, cfg.beta_2)
    torch._foreach_addcmul_(v, grads, grads, value=1 - cfg.beta_2)
    if cfg.amsgrad:
        vmax = state.slots["max_exp_avg_sq"]
        torch._foreach_maximum_(vmax, v)
        v = vmax
    denom = torch._foreach_sqrt(v)
    torch._foreach_div_(denom, bc2_sqrt)
    torch._foreach_add_(denom, cfg.epsilon)
    addcdiv_scaled_(params, m, denom, -step_size)


ADAM = Rule(AdamConfig, adam_slots, adam_scalars, adam_update, adam_update_foreach)
ADAMW = Rule(AdamWConfig, adam_slots, adam_scalars, adam_update, adam_update_foreach)

# ------------------------------------------------------------------------- Adamax


@dataclass(frozen=True)
class AdamaxConfig(Config):
    """torch.optim.Adamax:

        g ← g + wd·p
        m ← β₁·m + (1 − β₁)·g
        u ← max(β₂·u, |g| + ε)
        p ← p − (lr / (1 − β₁ᵗ)) · m / u

    Keras → torch: learning_rate → lr, beta_1/beta_2 → betas, epsilon → eps (torch
    adds it to |g| inside the max; Keras to u in the denominator), weight_decay →
    weight_decay (L2 on the gradient).
    """

    beta_1: Annotated[float, real(ge=0, lt=1)]
    beta_2: Annotated[float, real(ge=0, lt=1)]
    epsilon: Annotated[float, real(gt=0)]
    name: ClassVar[str] = "adamax"


def adamax_slots(cfg: AdamaxConfig) -> tuple[str, ...]:
    return ("exp_avg", "exp_inf")


def adamax_scalars(cfg: AdamaxConfig, state: State, lr: float) -> tuple[float, ...]:
    """(lr / (1 − β₁ᵗ),)"""
    return (lr / (1 - cfg.beta_1**state.step),)


def adamax_update(
    cfg: AdamaxConfig,
    state: State,
    params: list[Tensor],
    grads: list[Tensor],
    s: tuple[float, ...],
    work: list[Tensor] | None = None,
) -> None:
    (clr,) = s
    slots = state.slots["exp_avg"], state.slots["exp_inf"]
    for i, (p, g, m, u) in enumerate(zipped(params, grads, *slots)):
        if cfg.weight_decay:
            g = g.add(p, alpha=cfg.weight_decay)
        m.lerp_(g, 1 - cfg.beta_1)
        norm = torch.abs(g, out=work[i] if work else None).add_(cfg.epsilon)
        torch.maximum(u.mul_(cfg.beta_2), norm, out=u)
        p.addcdiv_(m, u, value=-clr)


def adamax_update_foreach(
    cfg: AdamaxConfig, state: State, params: list[Tensor], grads: Tensors, s: tuple[Scalar, ...]
) -> None:
    (clr,) = s
    m, u = state.slots["exp_avg"], state.slots["exp_inf"]
    if cfg.weight_decay:
        grads = torch._foreach_add(grads, params, alpha=cfg.weight_decay)
    torch._foreach_lerp_(m, grads, 1 - cfg.beta_1)
    norm = torch._foreach_abs(grads)
    torch._foreach_add_(norm, cfg.epsilon)
    torch._foreach_mul_(u, cfg.beta_2)
    torch._foreach_maximum_(u, norm)
    addcdiv_scaled_(params, m, u, -clr)


ADAMAX = Rule(AdamaxConfig, adamax_slots, adamax_scalars, adamax_update, adamax_update_foreach)

# -------------------------------------------------------------------------- NAdam

MOMENTUM_DECAY = 1.0  # torch's momentum_decay ψ for Keras' schedule 0.96ᵗ (torch's default: 0.004)


@dataclass(frozen=True)
class NadamConfig(Config):
    """torch.optim.NAdam with Keras' momentum schedule (momentum_decay ψ = 1):

        g ← g + wd·p
        μₜ ← β₁·(1 − ½·0.96^(t·ψ)),   Πₜ ← Πₜ₋₁·μₜ   (Π₀ = 1)
        m ← β₁·m + (1 − β₁)·g
        v ← β₂·v + (1 − β₂)·g²
        d ← √(v / (1 − β₂ᵗ)) + ε
        p ← p − lr·(1 − μₜ)/(1 − Πₜ) · g/d − lr·μₜ₊₁/(1 − Πₜ·μₜ₊₁) · m/d

    Keras → torch: learning_rate → lr, beta_1/beta_2 → betas, epsilon → eps (outside
    the root, as both), weight_decay → weight_decay (L2 on the gradient). Keras' Nadam
    is this rule with ψ = 1 (μₜ = β₁(1 − ½·0.96ᵗ)); torch's default ψ = 0.004 is Dozat's
    paper's, which Keras does not follow. Πₜ is kept on the host (`state.numbers`).
    """

    beta_1: Annotated[float, real(ge=0, lt=1)]
    beta_2: Annotated[float, real(ge=0, lt=1)]
    epsilon: Annotated[float, real(gt=0)]
    name: ClassVar[str] = "nadam"


def nadam_slots(cfg: NadamConfig) -> tuple[str, ...]:
    return ("exp_avg", "exp_avg_sq")


def nadam_scalars(cfg: NadamConfig, state: State, lr: float) -> tuple[float, ...]:
    """(−lr·(1 − μₜ)/(1 − Πₜ), −lr·μₜ₊₁/(1 − Πₜ·μₜ₊₁), 1 − β₂ᵗ); advances Πₜ."""
    t, b1 = state.step, cfg.beta_1
    mu = b1 * (1.0 - 0.5 * (0.96 ** (t * MOMENTUM_DECAY)))
    mu_next = b1 * (1.0 - 0.5 * (0.96 ** ((t + 1) * MOMENTUM_DECAY)))
    product = state.numbers.get("mu_product", 1.0) * mu
    state.numbers["mu_product"] = product
    return (
        -lr * (1.0 - mu) / (1.0 - product),
        (-lr * mu_next) / (1.0 - product * mu_next),
        1 - cfg.beta_2**t,
    )


def nadam_update(
    cfg: NadamConfig,
    state: State,
    params: list[Tensor],
    grads: list[Tensor],
    s: tuple[float, ...],
    work: list[Tensor] | None = None,
) -> None:
    grad_coef, avg_coef, bias_correction2 = s
    slots = state.slots["exp_avg"], state.slots["exp_avg_sq"]
    for i, (p, g, m, v) in enumerate(zipped(params, grads, *slots)):
        if cfg.weight_decay:
            g = g.add(p, alpha=cfg.weight_decay)
        m.lerp_(g, 1 - cfg.beta_1)
        v.mul_(cfg.beta_2).addcmul_(g, g, value=1 - cfg.beta_2)
        denom = torch.div(v, bias_correction2, out=work[i] if work else None)
        denom.sqrt_().add_(cfg.epsilon)
        p.addcdiv_(g, denom, value=grad_coef)
        p.addcdiv_(m, denom, value=avg_coef)


def nadam_update_foreach(
    cfg: NadamConfig, state: State, params: list[Tensor], grads: Tensors, s: tuple[Scalar, ...]
) -> None:
    grad_coef, avg_coef, bias_correction2 = s
    m, v = state.slots["exp_avg"], state.slots["exp_avg_sq"]
    if cfg.weight_decay:
        grads = torch._foreach_add(grads, params, alpha=cfg.weight_decay)
    torch._foreach_lerp_(m, grads, 1 - cfg.beta_1)
    torch._foreach_mul_(v, cfg.beta_2)
    torch._foreach_addcmul_(v, grads, grads, value=1 - cfg.beta_2)
    denom = torch._foreach_div(v, bias_correction2)
    torch._foreach_sqrt_(denom)
    torch._foreach_add_(denom, cfg.epsilon)
    addcdiv_scaled_(params, grads, denom, grad_coef)
    addcdiv_scaled_(params, m, denom, avg_coef)


NADAM = Rule(NadamConfig, nadam_slots, nadam_scalars, nadam_update, nadam_update_foreach)
