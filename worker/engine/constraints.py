"""Keras' weight constraints, applied in place after every optimizer update (Keras 3
applies each variable's constraint right after the update, in `Optimizer.apply`).

With norms = √(Σ w² over `axis`, kept as a dim) and ε = 1e-7 (Keras' backend epsilon):

    max_norm       w · clip(norms, 0, max_value) / (ε + norms)
    non_neg        max(w, 0)
    unit_norm      w / (ε + norms)
    min_max_norm   w · (rate·clip(norms, min_value, max_value) + (1 − rate)·norms) / (ε + norms)

For a dense kernel [in, units], axis 0 is each unit's incoming weights (Keras' default);
a bias [units] has axis 0 only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from torch import Tensor

from fitq.worker.engine.config import Checked, read, real
from fitq.worker.engine.errors import ConfigError

EPSILON = 1e-7  # Keras' backend epsilon, in the denominators


class _Axis(Checked):
    axis: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.axis not in (0, 1):
            raise ConfigError(f"axis must be 0 or 1, got {self.axis!r}")


@dataclass(frozen=True)
class MaxNormConfig(_Axis):
    max_value: Annotated[float, real(ge=0)]
    axis: int


@dataclass(frozen=True)
class NonNegConfig(Checked):
    """No parameters."""


@dataclass(frozen=True)
class UnitNormConfig(_Axis):
    axis: int


@dataclass(frozen=True)
class MinMaxNormConfig(_Axis):
    min_value: Annotated[float, real(ge=0)]
    max_value: Annotated[float, real(ge=0)]
    rate: Annotated[float, real(ge=0, le=1)]  # 1: strict; < 1 moves the norm part way
    axis: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min_value > self.max_value:
            raise ConfigError(
                f"max_value must be >= min_value ({self.min_value!r}), got {self.max_value!r}"
            )


PARAMETERS: dict[str, type[Checked]] = {
    "max_norm": MaxNormConfig,
    "non_neg": NonNegConfig,
    "unit_norm": UnitNormConfig,
    "min_max_norm": MinMaxNormConfig,
}
"""Each constraint's config: the keys of its normalized spec besides "name"."""


class Constraint:
    """One weight's constraint: `apply(w)` overwrites w with its constrained value."""

    def __init__(self, name: str, config: Checked):
        self.name, self.config = name, config

    def apply(self, w: Tensor) -> None:
        c: Any = self.config
        if self.name == "non_neg":
            w.clamp_(min=0.0)
            return
        axis = c.axis if w.dim() > 1 else 0
        norms = w.square().sum(dim=axis, keepdim=True).sqrt_()
        if self.name == "unit_norm":
            w.div_(norms.add_(EPSILON))
            return
        if self.name == "max_norm":
            desired = norms.clamp(0.0, c.max_value)
        else:  # min_max_norm
            desired = norms.clamp(c.min_value, c.max_value).mul_(c.rate)
            desired.add_(norms, alpha=1.0 - c.rate)
        w.mul_(desired.div_(norms.add_(EPSILON)))


def get(config: Mapping[str, Any] | None, rank: int, where: str) -> Constraint | None:
    """The constraint a normalized `kernel_constraint`/`bias_constraint` names (None: none),
    for a weight of `rank` dimensions (a bias, rank 1, takes axis 0 only)."""
    if config is None:
        return None
    name = config.get("name") if isinstance(config, Mapping) else config
    if not isinstance(name, str) or name not in PARAMETERS:
        raise ConfigError(f"{where}: unknown constraint {name!r}")
    c: Any = read(PARAMETERS[name], config, where, tag="name")
    if rank == 1 and getattr(c, "axis", 0) != 0:
        raise ConfigError(f"{where}: a bias has axis 0 only, got axis {c.axis!r}")
    return Constraint(name, c)
