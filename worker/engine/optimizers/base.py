"""What every optimizer shares: Keras' common keys, the state, and the step's scalars.

Every optimizer config has Keras' base keys: `learning_rate` (a number, or a schedule
evaluated at each step), `weight_decay`, and the gradient clipping `clipnorm`,
`clipvalue`, `global_clipnorm` (null: off; at most one of them, as Keras 3 refuses
more). A rule (sgd.py, adam.py, …) adds its own keys.

A step's scalars are the numbers of the rule that change from step to step (the
learning rate, Adam's bias corrections, …), computed on the host in double precision
by the rule's `scalars` function. The per-tensor path takes them as floats; the
foreach path takes floats or 0-d device tensors holding the same values, which is
what lets a CUDA graph capture the update once and replay it while they change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import torch
from torch import Tensor

from fitq.worker.engine.config import Checked, real
from fitq.worker.engine.errors import ConfigError
from fitq.worker.engine.optimizers import schedules

Tensors = list[Tensor] | tuple[Tensor, ...]  # what torch._foreach_* take and return
Scalar = float | Tensor  # a step's number: a float, or a 0-d tensor holding it
CLIP_KEYS = ("clipnorm", "clipvalue", "global_clipnorm")


@dataclass
class State:
    """The step counter (updates begun), each slot's tensors (one per parameter), and
    the host-side numbers a rule carries from step to step (NAdam's μ product)."""

    step: int = 0
    slots: dict[str, list[Tensor]] = field(default_factory=dict)
    numbers: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Config(Checked):
    """Keras' keys common to every optimizer. A `learning_rate` object is read as a
    schedule (schedules.py) when the config is made."""

    learning_rate: Annotated[float | schedules.Schedule, real(gt=0)]
    weight_decay: Annotated[float, real(ge=0)]
    clipnorm: Annotated[float | None, real(gt=0)]
    clipvalue: Annotated[float | None, real(gt=0)]
    global_clipnorm: Annotated[float | None, real(gt=0)]

    name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if not isinstance(self.learning_rate, int | float | schedules.Schedule):
            rate = schedules.make(self.learning_rate, "learning_rate")
            object.__setattr__(self, "learning_rate", rate)
        super().__post_init__()
        clips = [k for k in CLIP_KEYS if getattr(self, k) is not None]
        if len(clips) > 1:
            raise ConfigError(
                f"at most one of clipnorm, clipvalue, global_clipnorm may be set "
                f"(as Keras 3), got {' and '.join(clips)}"
            )

    @property
    def schedule(self) -> schedules.Schedule | None:
        return self.learning_rate if isinstance(self.learning_rate, schedules.Schedule) else None

    @property
    def constant_learning_rate(self) -> float:
        """The learning rate of a config without a schedule (a ConfigError otherwise)."""
        if isinstance(self.learning_rate, schedules.Schedule):
            raise ConfigError("learning_rate is a schedule, not a constant")
        return float(self.learning_rate)


@dataclass(frozen=True)
class Rule:
    """One optimizer's update rule: its config, slots and scalars, and its two paths
    (per-tensor: `update(cfg, state, params, grads, scalars, work)`; foreach:
    `update_foreach(cfg, state, params, grads, scalars)`), proven equal by the tests."""

    config: type[Config]
    slots: Callable[[Any], tuple[str, ...]]
    scalars: Callable[[Any, State, float], tuple[float, ...]]
    update: Callable[..., None]
    update_foreach: Callable[..., None]


def add_scaled_(xs: Tensors, ys: Tensors, s: Scalar) -> None:
    """xs ← xs + s·ys (s a float, or a 0-d tensor: one more pass over memory)."""
    if isinstance(s, Tensor):
        torch._foreach_add_(xs, torch._foreach_mul(ys, s))
    else:
        torch._foreach_add_(xs, ys, alpha=s)


def addcdiv_scaled_(xs: Tensors, a: Tensors, b: Tensors, s: Scalar) -> None:
    """xs ← xs + s·a/b (s a float, or a 0-d tensor)."""
    if isinstance(s, Tensor):
        torch._foreach_addcdiv_(xs, torch._foreach_mul(a, s), b)
    else:
        torch._foreach_addcdiv_(xs, a, b, value=s)


def scale_(xs: Tensors, s: Scalar) -> None:
    """xs ← s·xs."""
    torch._foreach_mul_(xs, s)


def root_plus(v: Tensor, eps: float, out: Tensor | None, scale: float = 1.0) -> Tensor:
    """√v·scale + ε, in two passes over memory (into `out` when given). The per-tensor
    paths use it; the arithmetic is torch's up to the rounding of one multiply-add."""
    d = torch.sqrt(v, out=out)
    if scale == 1.0:
        return d.add_(eps)
    return torch.add(_scalar(eps, v.dtype), d, alpha=scale, out=d)


_SCALARS: dict[tuple[float, torch.dtype], Tensor] = {}


def _scalar(value: float, dtype: torch.dtype) -> Tensor:
    """A CPU scalar tensor (usable with tensors on any device), made once per value."""
    key = (value, dtype)
    t = _SCALARS.get(key)
    if t is None:
        t = _SCALARS[key] = torch.tensor(value, dtype=dtype)
    return t


def learning_rate_only(cfg: Config, state: State, lr: float) -> tuple[float, ...]:
    """The scalars of a rule whose only changing number is the learning rate."""
    return (lr,)


def decoupled_decay(lr: float, wd: float) -> float:
    """The factor of decoupled weight decay, p ← p·(1 − lr·wd) (torch's AdamW, Keras 3)."""
    return 1 - lr * wd


def zipped(*lists: Sequence[Tensor]) -> zip[tuple[Tensor, ...]]:
    return zip(*lists, strict=True)
