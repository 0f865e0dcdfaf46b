"""The solo optimizers' update rules (worker/engine/optimizers/, torch.optim's) for K
members at once, over one flat buffer [K, P]: every op is one kernel over all members'
parameters, every hyperparameter a [K, 1] column, so members may differ in all of them.

Each rule below is the solo per-tensor path's, with `value=`/`alpha=` scalars turned
into [K, 1] factors (p + (−lr)·d becomes `p.addcmul_(d, −lr)`). Where it saves a pass
over memory an op is written another way with the same value up to rounding: a moving
average of g² is `v.lerp_(g², 1 − β)`, and Adam folds its step size into the
denominator. The switches that change a rule's shape are made arithmetic, exact for the
members that do not use them, so one sequence of ops serves a pack that mixes them:

    momentum 0            b ← 0·b + g = g (the buffer starts at zero, as the solo one)
    nesterov              d ← ν·g + c·b, ν = 1, c = μ (nesterov); ν = 0, c = 1 (not)
    rmsprop centered      v − c·ḡ², c = 1 or 0
    adam amsgrad          v̂ ← max(a·v̂, v), a = 1 or 0 (0: v̂ = v, as v ≥ 0)

Slots are the union of the members' (a member without momentum carries a buffer it
never reads back); a member's checkpoint holds only its own, by the solo names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fitq.worker.engine import optimizers
from fitq.worker.engine.optimizers import AdamConfig, Config
from fitq.worker.engine.pack import fused

Coefs = dict[str, Tensor]  # name → [K, 1] (or [A, 1] for a subset of members)

_SLOTS: dict[str, Callable[[Any], tuple[str, ...]]] = {
    "sgd": optimizers.sgd_slots,
    "adagrad": optimizers.adagrad_slots,
    "rmsprop": optimizers.rmsprop_slots,
    "adam": optimizers.adam_slots,
    "adamw": optimizers.adam_slots,
}
_SLOT_ORDER = (
    "momentum_buffer",
    "sum",
    "square_avg",
    "grad_avg",
    "exp_avg",
    "exp_avg_sq",
    "max_exp_avg_sq",
)


def own_slots(config: Config) -> tuple[str, ...]:
    """The slots a member's solo optimizer keeps (its checkpoint's `optimizer.{slot}.0`)."""
    return tuple(_SLOTS[config.name](config))


def slot_init(config: Config, slot: str) -> float:
    """A slot's starting value, as the solo optimizer starts it."""
    if slot == "sum":
        return float(config.initial_accumulator_value)  # type: ignore[attr-defined]
    return 0.0


class PackedOptimizer:
    """The update of one optimizer name for the members' configs, in pack order."""

    def __init__(self, configs: Sequence[Config], fuse: bool = False):
        self.name = configs[0].name
        self.fused = fuse  # the rule compiled into one pass (fused.py)
        self.configs = list(configs)
        names = {s for c in configs for s in own_slots(c)}
        self.slots = tuple(s for s in _SLOT_ORDER if s in names)

    def coefficients(self, like: Tensor) -> Coefs:
        """The per-member constants, [K, 1] in like's dtype and device."""
        cs = self.configs

        def col(values: Sequence[float]) -> Tensor:
            return torch.tensor(values, dtype=like.dtype).view(-1, 1).to(like.device)

        c: Coefs = {"neg_lr": col([-x.constant_learning_rate for x in cs])}
        decoupled = isinstance(cs[0], AdamConfig) and cs[0].decoupled
        if any(x.weight_decay for x in cs):
            if decoupled:
                c["decay"] = col([1 - x.constant_learning_rate * x.weight_decay for x in cs])
            else:
                c["wd"] = col([x.weight_decay for x in cs])
        attr = _attrs
        if self.name == "sgd":
            c["mu"] = col(attr(cs, "momentum"))
            if any(attr(cs, "nesterov")):
                c["nu"] = col([1.0 if n else 0.0 for n in attr(cs, "nesterov")])
                c["cn"] = col([x.momentum if x.nesterov else 1.0 for x in cs])  # type: ignore[attr-defined]
        elif self.name == "adagrad":
            c["eps"] = col(attr(cs, "epsilon"))
        elif self.name == "rmsprop":
            c["one_minus_rho"] = col([1 - r for r in attr(cs, "rho")])
            c["eps"] = col(attr(cs, "epsilon"))
            c["mu"] = col(attr(cs, "momentum"))
            c["neg_centered"] = col([-1.0 if x else 0.0 for x in attr(cs, "centered")])
        else:
            c["one_minus_b1"] = col([1 - b for b in attr(cs, "beta_1")])
            c["one_minus_b2"] = col([1 - b for b in attr(cs, "beta_2")])
            c["ams"] = col([1.0 if a else 0.0 for a in attr(cs, "amsgrad")])
        return c

    def step_coefficients(self, steps: np.ndarray, like: Tensor) -> Coefs:
        """The coefficients that change with each member's step t (1-based) — Adam's
        bias corrections, with ε — for a round: steps [S, K] → [S, K, 1] tensors. The
        corrections are the solo optimizer's own function's, in double precision."""
        if self.name not in ("adam", "adamw"):
            return {}
        root_scale = np.empty(steps.shape)  # 1/(√(1 − β₂ᵗ)·(−s)), s = lr/(1 − β₁ᵗ)
        eps_scale = np.empty(steps.shape)  # ε/(−s)
        for k, config in enumerate(self.configs):
            assert isinstance(config, AdamConfig)
            for s, t in enumerate(steps[:, k].tolist()):
                step_size, bc2_sqrt = optimizers._adam_scalars(config, int(t))
                root_scale[s, k] = 1 / bc2_sqrt / -step_size
                eps_scale[s, k] = config.epsilon / -step_size

        def tensor(a: np.ndarray) -> Tensor:
            return torch.from_numpy(a).to(like.dtype).unsqueeze(-1).to(like.device)

        return {"root_scale": tensor(root_scale), "eps_scale": tensor(eps_scale)}

    def update(self, p: Tensor, g: Tensor, slots: dict[str, Tensor], c: Coefs, work: Tensor):
        """One step for every row of p [A, P] (g is overwritten; work is scratch, a
        [0, P] stand-in for the rules that need none)."""
        if self.fused:
            fused.run(_UPDATES[self.name], p, g, slots, c, work)
        else:
            _UPDATES[self.name](p, g, slots, c, work)

    @property
    def needs_work(self) -> bool:
        """Whether the rule uses a scratch buffer [K, P] (the eager form does)."""
        return self.name in NEEDS_WORK


def _attrs(configs: Sequence[Config], name: str) -> list[Any]:
    return [getattr(x, name) for x in configs]


# ---------------------------------------------------------------- the update rules
# Each rule reads and writes its [K, P] buffers in as few passes as eager ops allow: g
# is spent once its last reader has run (it then holds g², √v, the step's direction…),
# so no rule allocates and Adam needs no scratch buffer. `fused.py` compiles the same
# functions into one loop over memory where a C++ compiler is at hand.


def sgd(p: Tensor, g: Tensor, s: dict[str, Tensor], c: Coefs, work: Tensor) -> None:
    """optimizers.SGDConfig's rule."""
    if "wd" in c:
        g.addcmul_(p, c["wd"])  # g ← g + wd·p
    d = g
    if "momentum_buffer" in s:
        b = s["momentum_buffer"]
        torch.addcmul(g, b, c["mu"], out=b)  # b ← μ·b + g
        d = g.mul_(c["nu"]).addcmul_(b, c["cn"]) if "nu" in c else b  # g + μ·b, or b
    p.addcmul_(d, c["neg_lr"])  # p ← p − lr·d


def adagrad(p: Tensor, g: Tensor, s: dict[str, Tensor], c: Coefs, work: Tensor) -> None:
    """optimizers.AdagradConfig's rule."""
    if "wd" in c:
        g.addcmul_(p, c["wd"])
    total = s["sum"]
    total.addcmul_(g, g)  # s ← s + g²
    std = torch.sqrt(total, out=work).add_(c["eps"])  # √s + ε
    p.addcmul_(torch.div(g, std, out=g), c["neg_lr"])  # p ← p − lr·g/(√s + ε)


def rmsprop(p: Tensor, g: Tensor, s: dict[str, Tensor], c: Coefs, work: Tensor) -> None:
    """optimizers.RMSpropConfig's rule."""
    if "wd" in c:
        g.addcmul_(p, c["wd"])
    v = s["square_avg"]
    v.lerp_(torch.mul(g, g, out=work), c["one_minus_rho"])  # v ← ρv + (1−ρ)g²
    if "grad_avg" in s:
        gbar = s["grad_avg"]
        gbar.lerp_(g, c["one_minus_rho"])  # ḡ ← ρḡ + (1−ρ)g
        d = torch.addcmul(v, torch.mul(gbar, c["neg_centered"], out=work), gbar, out=work)
        d.sqrt_()  # √(v − ḡ²) (centered members), √v (the others)
    else:
        d = torch.sqrt(v, out=work)
    d.add_(c["eps"])
    if "momentum_buffer" in s:
        b = s["momentum_buffer"]
        b.mul_(c["mu"]).addcdiv_(g, d)  # b ← μb + g/d
        p.addcmul_(b, c["neg_lr"])  # p ← p − lr·b
    else:
        p.addcmul_(torch.div(g, d, out=d), c["neg_lr"])  # p ← p − lr·g/d


def adam(p: Tensor, g: Tensor, s: dict[str, Tensor], c: Coefs, work: Tensor) -> None:
    """optimizers.AdamConfig's rule (adamw: the decoupled decay)."""
    if "decay" in c:
        p.mul_(c["decay"])  # p ← p − lr·wd·p
    elif "wd" in c:
        g.addcmul_(p, c["wd"])  # g ← g + wd·p
    m, v = s["exp_avg"], s["exp_avg_sq"]
    m.lerp_(g, c["one_minus_b1"])  # m ← β₁m + (1−β₁)g
    v.lerp_(g.mul_(g), c["one_minus_b2"])  # v ← β₂v + (1−β₂)g²  (g is spent: g²)
    if "max_exp_avg_sq" in s:
        vmax = s["max_exp_avg_sq"]
        torch.maximum(vmax.mul_(c["ams"]), v, out=vmax)  # v̂ ← max(v̂, v)
        v = vmax
    # p ← p − s·m/(√v/√(1 − β₂ᵗ) + ε), s = lr/(1 − β₁ᵗ), as p + m/d with d = that root
    # divided by −s: one scaling (addcmul) and one addcdiv (the solo path divides, then
    # scales)
    d = torch.sqrt(v, out=g)
    torch.addcmul(c["eps_scale"], d, c["root_scale"], out=d)
    p.addcdiv_(m, d)


_UPDATES = {"sgd": sgd, "adagrad": adagrad, "rmsprop": rmsprop, "adam": adam, "adamw": adam}
NEEDS_WORK = frozenset({"adagrad", "rmsprop"})
"""The rules that need a scratch buffer [K, P] besides the spent gradient."""
