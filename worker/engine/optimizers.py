"""Optimizers, sorted by increasing complexity: SGD, Adagrad, RMSprop, Adam/AdamW.

Each is a config (Keras names and defaults, validated on construction), a state
(a step counter and per-parameter slot tensors) and an update function with two
paths: a readable per-tensor loop and a `torch._foreach_*` fast path, proven equal
by tests/engine/test_optimizers.py. The update rules are torch.optim's, step for
step (where Keras and torch differ, fitq follows torch); each docstring gives the
rule and how the Keras names map onto torch.optim's arguments.

`weight_decay` is torch's: added to the gradient (L2) for sgd, adagrad, rmsprop
and adam; decoupled (p ← p − lr·wd·p) for adamw.

A config takes a normalized `compile.optimizer` as it is (docs/spec-contract.md): no
defaults here, every key present, none unknown. Its bounds are the ones the update
rule needs; momenta and β's lie in [0, 1): at 1 the average never forgets (SGD's and
RMSprop's buffer sums every gradient ever seen; Adam's bias correction divides by
1 − 1ᵗ = 0). torch.optim accepts momentum ≥ 1 and Keras momentum 1; fitq refuses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import torch
from torch import Tensor

from fitq.worker.engine.config import Checked, read, real
from fitq.worker.engine.errors import ConfigError

Tensors = list[Tensor] | tuple[Tensor, ...]  # what torch._foreach_* take and return


@dataclass
class State:
    """The step counter (updates done) and each slot's tensors, one per parameter."""

    step: int = 0
    slots: dict[str, list[Tensor]] = field(default_factory=dict)


_SCALARS: dict[tuple[float, torch.dtype], Tensor] = {}


def _root_plus(v: Tensor, eps: float, out: Tensor | None, scale: float = 1.0) -> Tensor:
    """√v·scale + ε, in two passes over memory (into `out` when given). The per-tensor
    paths use it; the arithmetic is torch's up to the rounding of one multiply-add."""
    d = torch.sqrt(v, out=out)
    if scale == 1.0:
        return d.add_(eps)
    key = (eps, v.dtype)
    eps_t = _SCALARS.get(key)
    if eps_t is None:
        eps_t = _SCALARS[key] = torch.tensor(eps, dtype=v.dtype)  # a CPU scalar, any device
    return torch.add(eps_t, d, alpha=scale, out=d)


@dataclass(frozen=True)
class Config(Checked):
    learning_rate: Annotated[float, real(gt=0)]
    weight_decay: Annotated[float, real(ge=0)]

    name: ClassVar[str] = ""


# ---------------------------------------------------------------------------- SGD


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


def sgd_update(cfg: SGDConfig, state: State, params: list[Tensor], grads: list[Tensor], work=None):
    state.step += 1
    lr, mu, wd = cfg.learning_rate, cfg.momentum, cfg.weight_decay
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
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


def sgd_update_foreach(cfg: SGDConfig, state: State, params: list[Tensor], grads: Tensors):
    state.step += 1
    lr, mu, wd = cfg.learning_rate, cfg.momentum, cfg.weight_decay
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
    torch._foreach_add_(params, grads, alpha=-lr)


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
    cfg: AdagradConfig, state: State, params: list[Tensor], grads: list[Tensor], work=None
):
    state.step += 1
    for i, (p, g, s) in enumerate(zip(params, grads, state.slots["sum"], strict=True)):
        if cfg.weight_decay:
            g = g.add(p, alpha=cfg.weight_decay)
        s.addcmul_(g, g, value=1)
        std = _root_plus(s, cfg.epsilon, work[i] if work else None)
        p.addcdiv_(g, std, value=-cfg.learning_rate)


def adagrad_update_foreach(cfg: AdagradConfig, state: State, params: list[Tensor], grads: Tensors):
    state.step += 1
    sums = state.slots["sum"]
    if cfg.weight_decay:
        grads = torch._foreach_add(grads, params, alpha=cfg.weight_decay)
    torch._foreach_addcmul_(sums, grads, grads, value=1)
    std = torch._foreach_sqrt(sums)
    torch._foreach_add_(std, cfg.epsilon)
    torch._foreach_addcdiv_(params, grads, std, value=-cfg.learning_rate)


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
    cfg: RMSpropConfig, state: State, params: list[Tensor], grads: list[Tensor], work=None
):
    state.step += 1
    a = cfg.rho
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        if cfg.weight_decay:
            g = g.add(p, alpha=cfg.weight_decay)
        v = state.slots["square_avg"][i]
        v.mul_(a).addcmul_(g, g, value=1 - a)
        if cfg.centered:
            gbar = state.slots["grad_avg"][i]
            gbar.lerp_(g, 1 - a)
            d = _root_plus(v.addcmul(gbar, gbar, value=-1), cfg.epsilon, work[i] if work else None)
        else:
            d = _root_plus(v, cfg.epsilon, work[i] if work else None)
        if cfg.momentum:
            b = state.slots["momentum_buffer"][i]
            b.mul_(cfg.momentum).addcdiv_(g, d)
            p.add_(b, alpha=-cfg.learning_rate)
        else:
            p.addcdiv_(g, d, value=-cfg.learning_rate)


def rmsprop_update_foreach(cfg: RMSpropConfig, state: State, params: list[Tensor], grads: Tensors):
    state.step += 1
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
        torch._foreach_add_(params, b, alpha=-cfg.learning_rate)
    else:
        torch._foreach_addcdiv_(params, grads, d, value=-cfg.learning_rate)


# -------------------------------------------------------------------- Adam, AdamW


@dataclass(frozen=True)
class AdamConfig(Config):
    """torch.optim.Adam (adamw: torch.optim.AdamW), t = the step, 1-based:

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


def _adam_scalars(cfg: AdamConfig, step: int) -> tuple[float, float]:
    """(step size lr/(1 − β₁ᵗ), √(1 − β₂ᵗ)), in double precision as torch computes them."""
    bias_correction1 = 1 - cfg.beta_1**step
    bias_correction2 = 1 - cfg.beta_2**step
    return cfg.learning_rate / bias_correction1, bias_correction2**0.5


def adam_update(
    cfg: AdamConfig, state: State, params: list[Tensor], grads: list[Tensor], work=None
):
    state.step += 1
    step_size, bc2_sqrt = _adam_scalars(cfg, state.step)
    lr, wd = cfg.learning_rate, cfg.weight_decay
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        if wd and cfg.decoupled:
            p.mul_(1 - lr * wd)
        elif wd:
            g = g.add(p, alpha=wd)
        m, v = state.slots["exp_avg"][i], state.slots["exp_avg_sq"][i]
        m.lerp_(g, 1 - cfg.beta_1)
        v.mul_(cfg.beta_2).addcmul_(g, g, value=1 - cfg.beta_2)
        if cfg.amsgrad:
            vmax = state.slots["max_exp_avg_sq"][i]
            torch.maximum(vmax, v, out=vmax)
            v = vmax
        denom = _root_plus(v, cfg.epsilon, work[i] if work else None, 1 / bc2_sqrt)
        p.addcdiv_(m, denom, value=-step_size)


def adam_update_foreach(
    cfg: AdamConfig,
    state: State,
    params: list[Tensor],
    grads: Tensors,
    scalars: tuple[Tensor, Tensor] | None = None,
):
    """The foreach path. With `scalars` (0-d device tensors the caller has filled with
    `_adam_scalars` for this step) it reads the step-dependent numbers from them, so the
    update can be captured once in a CUDA graph and replayed."""
    state.step += 1
    lr, wd = cfg.learning_rate, cfg.weight_decay
    m, v = state.slots["exp_avg"], state.slots["exp_avg_sq"]
    if wd and cfg.decoupled:
        torch._foreach_mul_(params, 1 - lr * wd)
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
    if scalars is None:
        step_size, bc2_sqrt = _adam_scalars(cfg, state.step)
        torch._foreach_div_(denom, bc2_sqrt)
        torch._foreach_add_(denom, cfg.epsilon)
        torch._foreach_addcdiv_(params, m, denom, value=-step_size)
    else:
        step_size_t, bc2_sqrt_t = scalars
        torch._foreach_div_(denom, bc2_sqrt_t)
        torch._foreach_add_(denom, cfg.epsilon)
        update = torch._foreach_div(m, denom)
        torch._foreach_mul_(update, step_size_t)
        torch._foreach_sub_(params, update)


# ------------------------------------------------------------------ the optimizer


_KINDS: dict[str, tuple[type[Config], Any, Any, Any]] = {
    "sgd": (SGDConfig, sgd_slots, sgd_update, sgd_update_foreach),
    "adagrad": (AdagradConfig, adagrad_slots, adagrad_update, adagrad_update_foreach),
    "rmsprop": (RMSpropConfig, rmsprop_slots, rmsprop_update, rmsprop_update_foreach),
    "adam": (AdamConfig, adam_slots, adam_update, adam_update_foreach),
    "adamw": (AdamWConfig, adam_slots, adam_update, adam_update_foreach),
}


CONFIGS: dict[str, type[Config]] = {name: kind[0] for name, kind in _KINDS.items()}
"""Each optimizer's config: the keys of its normalized spec (tests check them)."""


def make_config(spec: Mapping[str, Any]) -> Config:
    """The config of a normalized `compile.optimizer`: its name and every key of that
    optimizer, nothing else (a bare name or an alias is the service's to resolve)."""
    name = spec.get("name") if isinstance(spec, Mapping) else spec
    if not isinstance(name, str) or name not in CONFIGS:
        raise ConfigError(f"compile.optimizer: unknown optimizer {name!r}")
    return read(CONFIGS[name], spec, "compile.optimizer", tag="name")


class Optimizer:
    """An optimizer bound to a list of parameters: `step(grads)` updates them in place."""

    def __init__(self, config: Config, params: list[Tensor], *, foreach: bool = True):
        self.config = config
        self.params = params
        self.foreach = foreach
        # the per-tensor path writes its temporaries (√v + ε, …) here, not into new memory
        self._work = None if foreach else [torch.empty_like(p) for p in params]
        _, slots, self._single, self._multi = _KINDS[config.name]
        self.state = State(
            slots={s: [_slot_init(config, s, p) for p in params] for s in slots(config)}
        )

    def step(self, grads: list[Tensor]) -> None:
        if self.foreach:
            self._multi(self.config, self.state, self.params, grads)
        else:
            self._single(self.config, self.state, self.params, grads, self._work)

    def state_tensors(self) -> dict[str, Tensor]:
        """The slots as flat names `optimizer.{slot}.{j}` (j = the parameter's position)."""
        return {
            f"optimizer.{slot}.{j}": t
            for slot, ts in self.state.slots.items()
            for j, t in enumerate(ts)
        }

    def load_state_tensors(self, step: int, tensors: Mapping[str, Tensor]) -> None:
        self.state.step = step
        for name, t in self.state_tensors().items():
            t.copy_(tensors[name])


def _slot_init(config: Config, slot: str, p: Tensor) -> Tensor:
    if slot == "sum":
        return torch.full_like(p, config.initial_accumulator_value)  # type: ignore[attr-defined]
    return torch.zeros_like(p)
