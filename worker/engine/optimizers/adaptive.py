"""Per-coordinate step sizes from the squared gradients: Adagrad, RMSprop, Adadelta
(torch.optim's rules), sorted by increasing complexity."""

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
    addcdiv_scaled_,
    learning_rate_only,
    root_plus,
    zipped,
)

# ------------------------------------------------------------------------ Adagrad


@dataclass(frozen=True)
class AdagradConfig(Config):
    """torch.optim.Adagrad with lr_decay 0:

        g ← g + wd·p
        s ← s + g²                  (s starts at initial_accumulator_value)
        p ← p − lr · g / (√s + ε)

    Keras → torch: learning_rate → lr, initial_accumulator_value →
    initial_accumulator_value, epsilon → eps (ε outside the root, as torch),
    weight_decay → weight_decay.
    """

    initial_accumulator_value: Annotated[float, real(ge=0)]
    epsilon: Annotated[float, real(gt=0)]
    name: ClassVar[str] = "adagrad"


def adagrad_slots(cfg: AdagradConfig) -> tuple[str, ...]:
    return ("sum",)


def adagrad_update(
    cfg: AdagradConfig,
    state: State,
    params: list[Tensor],
    grads: list[Tensor],
    s: tuple[float, ...],
    work: list[Tensor] | None = None,
) -> None:
    (lr,) = s
    for i, (p, g, total) in enumerate(zipped(params, grads, state.slots["sum"])):
        if cfg.weight_decay:
            g = g.add(p, alpha=cfg.weight_decay)
        total.addcmul_(g, g, value=1)
        std = root_plus(total, cfg.epsilon, work[i] if work else None)
        p.addcdiv_(g, std, value=-lr)


def adagrad_update_foreach(
    cfg: AdagradConfig, state: State, params: list[Tensor], grads: Tensors, s: tuple[Scalar, ...]
) -> None:
    (lr,) = s
    sums = state.slots["sum"]
    if cfg.weight_decay:
        grads = torch._foreach_add(grads, params, alpha=cfg.weight_decay)
    torch._foreach_addcmul_(sums, grads, grads, value=1)
    std = torch._foreach_sqrt(sums)
    torch._foreach_add_(std, cfg.epsilon)
    addcdiv_scaled_(params, grads, std, -lr)


ADAGRAD = Rule(
    AdagradConfig, adagrad_slots, learning_rate_only, adagrad_update, adagrad_update_foreach
)

# ------------------------------------------------------------------------ RMSprop


@dataclass(frozen=True)
class RMSpropConfig(Config):
    """torch.optim.RMSprop:

        g ← g + wd·p
        v ← α·v + (1 − α)·g²
        ḡ ← α·ḡ + (1 − α)·g,  d ← √(v − ḡ²) + ε     (centered)
                               d ← √v + ε            (otherwise)
        b ← μ·b + g/d,  p ← p − lr·b                  (momentum > 0)
        p ← p − lr·g/d                                (otherwise)

    Keras → torch: learning_rate → lr, rho → alpha, momentum → momentum,
    epsilon → eps (outside the root, as torch), centered → centered,
    weight_decay → weight_decay.
    """

    rho: Annotated[float, real(ge=0, lt=1)]
    momentum: Annotated[float, real(ge=0, lt=1)]
    epsilon: Annotated[float, real(gt=0)]
    centered: bool
    name: ClassVar[str] = "rmsprop"


def rmsprop_slots(cfg: RMSpropConfig) -> tuple[str, ...]:
    return (
        ("square_avg",)
        + (("grad_avg",) if cfg.centered else ())
        + (("momentum_buffer",) if cfg.momentum else ())
    )


def rmsprop_update(
    cfg: RMSpropConfig,
    state: State,
    params: list[Tensor],
    grads: list[Tensor],
    s: tuple[float, ...],
    work: list[Tensor] | None = None,
) -> None:
    (lr,) = s
    a = cfg.rho
    for i, (p, g) in enumerate(zipped(params, grads)):
        if cfg.weight_decay:
            g = g.add(p, alpha=cfg.weight_decay)
        v = state.slots["square_avg"][i]
        v.mul_(a).addcmul_(g, g, value=1 - a)
        if cfg.centered:
            gbar = state.slots["grad_avg"][i]
            gbar.lerp_(g, 1 - a)
            d = root_plus(v.addcmul(gbar, gbar, value=-1), cfg.epsilon, work[i] if work else None)
        else:
            d = root_plus(v, cfg.epsilon, work[i] if work else None)
        if cfg.momentum:
            b = state.slots["momentum_buffer"][i]
            b.mul_(cfg.momentum).addcdiv_(g, d)
            p.add_(b, alpha=-lr)
        else:
            p.addcdiv_(g, d, value=-lr)


def rmsprop_update_foreach(
    cfg: RMSpropConfig, state: State, params: list[Tensor], grads: Tensors, s: tuple[Scalar, ...]
) -> None:
    (lr,) = s
    a = cfg.rho
    if cfg.weight_decay:
        grads = torch._foreach_add(grads, params, alpha=cfg.weight_decay)
    v = state.slots["square_avg"]
    torch._foreach_mul_(v, a)
    torch._foreach_addcmul_(v, grads, grads, value=1 - a)
    if cfg.centered:
        gbar = state.slots["grad_avg"]
        torch._foreach_lerp_(gbar, grads, 1 - a)
        d = torch._foreach_addcmul(v, gbar, gbar, value=-1)
        torch._foreach_sqrt_(d)
    else:
        d = torch._foreach_sqrt(v)
    torch._foreach_add_(d, cfg.epsilon)
    if cfg.momentum:
        b = state.slots["momentum_buffer"]
        torch._foreach_mul_(b, cfg.momentum)
        torch._foreach_addcdiv_(b, grads, d)
        add_scaled_(params, b, -lr)
    else:
        addcdiv_scaled_(params, grads, d, -lr)


RMSPROP = Rule(
    RMSpropConfig, rmsprop_slots, learning_rate_only, rmsprop_update, rmsprop_update_foreach
)

# ----------------------------------------------------------------------- Adadelta


@dataclass(frozen=True)
class AdadeltaConfig(Config):
    """torch.optim.Adadelta (Keras' Adadelta is the same rule):

        g ← g + wd·p
        v ← ρ·v + (1 − ρ)·g²
        δ ← √(u + ε) / √(v + ε) · g
        u ← ρ·u + (1 − ρ)·δ²
        p ← p − lr·δ

    Keras → torch: learning_rate → lr, rho → rho, epsilon → eps (inside both roots,
    as both), weight_decay → weight_decay (L2 on the gradient). Keras' defaults
    (lr 0.001, ρ 0.95, ε 1e-7), not torch's (1.0, 0.9, 1e-6).
    """

    rho: Annotated[float, real(ge=0, lt=1)]
    epsilon: Annotated[float, real(gt=0)]
    name: ClassVar[str] = "adadelta"


def adadelta_slots(cfg: AdadeltaConfig) -> tuple[str, ...]:
    return ("square_avg", "acc_delta")


def adadelta_update(
    cfg: AdadeltaConfig,
    state: State,
    params: list[Tensor],
    grads: list[Tensor],
    s: tuple[float, ...],
    work: list[Tensor] | None = None,
) -> None:
    (lr,) = s
    rho, eps = cfg.rho, cfg.epsilon
    slots = state.slots["square_avg"], state.slots["acc_delta"]
    for i, (p, g, v, u) in enumerate(zipped(params, grads, *slots)):
        if cfg.weight_decay:
            g = g.add(p, alpha=cfg.weight_decay)
        v.mul_(rho).addcmul_(g, g, value=1 - rho)
        delta = torch.add(u, eps, out=work[i] if work else None).sqrt_()
        delta.div_(v.add(eps).sqrt_()).mul_(g)
        u.mul_(rho).addcmul_(delta, delta, value=1 - rho)
        p.add_(delta, alpha=-lr)


def adadelta_update_foreach(
    cfg: AdadeltaConfig, state: State, params: list[Tensor], grads: Tensors, s: tuple[Scalar, ...]
) -> None:
    (lr,) = s
    rho, eps = cfg.rho, cfg.epsilon
    v, u = state.slots["square_avg"], state.slots["acc_delta"]
    if cfg.weight_decay:
        grads = torch._foreach_add(grads, params, alpha=cfg.weight_decay)
    torch._foreach_mul_(v, rho)
    torch._foreach_addcmul_(v, grads, grads, value=1 - rho)
    std = torch._foreach_add(v, eps)
    torch._foreach_sqrt_(std)
    delta = torch._foreach_add(u, eps)
    torch._foreach_sqrt_(delta)
    torch._foreach_div_(delta, std)
    torch._foreach_mul_(delta, grads)
    torch._foreach_mul_(u, rho)
    torch._foreach_addcmul_(u, delta, delta, value=1 - rho)
    add_scaled_(params, delta, -lr)


ADADELTA = Rule(
    AdadeltaConfig, adadelta_slots, learning_rate_only, adadelta_update, adadelta_update_foreach
)
