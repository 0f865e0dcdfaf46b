"""Keras' learning-rate schedules: the learning rate of each optimizer step.

A schedule is a pure function of the step — Keras' `optimizer.iterations`, the number
of updates done before this one (0 for the first) — evaluated on the host in double
precision before each step (Keras computes in float32). Nothing else is kept, so a
resumed run gets the same rates from its step counter alone.

    exponential_decay       lr₀ · rᵖ,  p = step / decay_steps (⌊p⌋ with staircase)
    inverse_time_decay      lr₀ / (1 + r·p)
    piecewise_constant_decay values[i] for boundaries[i−1] < step ≤ boundaries[i]
    polynomial_decay        (lr₀ − end)·(1 − s/D)^power + end, s = min(step, D); with
                            cycle, D = decay_steps·⌈step/decay_steps⌉ (1 at step 0)
    cosine_decay            lr₀·((1 − α)·½(1 + cos(π·s/D)) + α), s = min(step, D); with a
                            warmup_target: a line from lr₀ to the target over
                            warmup_steps, then the cosine from the target
    cosine_decay_restarts   the cosine over periods first_decay_steps·t_mulⁱ, the i-th
                            scaled by m_mulⁱ (SGDR)

Each config's fields are exactly a normalized schedule's keys (the `schedule` key
names it). Where a rate may be 0 (cosine's default α = 0, a warmup from 0), a rule
that divides by it (ftrl) refuses the schedule: `reaches_zero`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from fitq.worker.engine.config import FLOAT32_MAX, Checked, read, real
from fitq.worker.engine.errors import ConfigError


@dataclass(frozen=True)
class Schedule(Checked):
    name: ClassVar[str] = ""

    def __call__(self, step: int) -> float:
        """The learning rate of the update that follows `step` updates."""
        raise NotImplementedError

    @property
    def reaches_zero(self) -> bool:
        """Whether some step's rate is exactly 0."""
        raise NotImplementedError


def _power(base: float, exponent: float) -> float:
    try:
        return base**exponent
    except OverflowError:  # a growing "decay" far along: the step then diverges
        return math.inf


def _floor(x: float) -> float:
    """⌊x⌋, infinity kept (a step over a vanishing decay_steps)."""
    return float(math.floor(x)) if math.isfinite(x) else x


def _ceil(x: float) -> float:
    return float(math.ceil(x)) if math.isfinite(x) else x


@dataclass(frozen=True)
class ExponentialDecay(Schedule):
    initial_learning_rate: Annotated[float, real(ge=0)]
    decay_steps: Annotated[float, real(gt=0)]
    decay_rate: Annotated[float, real(gt=0)]
    staircase: bool
    name: ClassVar[str] = "exponential_decay"

    def __call__(self, step: int) -> float:
        p = step / self.decay_steps
        p = _floor(p) if self.staircase else p
        return self.initial_learning_rate * _power(self.decay_rate, p)

    @property
    def reaches_zero(self) -> bool:
        return self.initial_learning_rate == 0


@dataclass(frozen=True)
class InverseTimeDecay(Schedule):
    initial_learning_rate: Annotated[float, real(ge=0)]
    decay_steps: Annotated[float, real(gt=0)]
    decay_rate: Annotated[float, real(ge=0)]
    staircase: bool
    name: ClassVar[str] = "inverse_time_decay"

    def __call__(self, step: int) -> float:
        p = step / self.decay_steps
        p = _floor(p) if self.staircase else p
        return self.initial_learning_rate / (1 + self.decay_rate * p)

    @property
    def reaches_zero(self) -> bool:
        return self.initial_learning_rate == 0


@dataclass(frozen=True)
class PiecewiseConstantDecay(Schedule):
    """Boundaries strictly increasing, one more value than boundaries, values ≥ 0."""

    boundaries: list[float]
    values: list[float]
    name: ClassVar[str] = "piecewise_constant_decay"

    def __post_init__(self) -> None:
        super().__post_init__()
        b, v = self.boundaries, self.values
        if not b or len(v) != len(b) + 1:
            raise ConfigError(
                f"values must have one more entry than boundaries (at least one), "
                f"got {len(v)} values and {len(b)} boundaries"
            )
        for what, xs, low in (("boundaries", b, -FLOAT32_MAX), ("values", v, 0.0)):
            for x in xs:
                if not isinstance(x, int | float) or not low <= x <= FLOAT32_MAX:
                    raise ConfigError(f"{what} must be numbers >= {low:g}, got {x!r}")
        if any(hi <= lo for lo, hi in zip(b, b[1:], strict=False)):
            raise ConfigError(f"boundaries must be strictly increasing, got {b}")

    def __call__(self, step: int) -> float:
        for boundary, value in zip(self.boundaries, self.values, strict=False):
            if step <= boundary:
                return float(value)
        return float(self.values[-1])

    @property
    def reaches_zero(self) -> bool:
        return 0 in self.values


@dataclass(frozen=True)
class PolynomialDecay(Schedule):
    initial_learning_rate: Annotated[float, real(ge=0)]
    decay_steps: Annotated[float, real(gt=0)]
    end_learning_rate: Annotated[float, real(ge=0)]
    power: Annotated[float, real(ge=0)]
    cycle: bool
    name: ClassVar[str] = "polynomial_decay"

    def __call__(self, step: int) -> float:
        span = self.decay_steps
        if self.cycle:
            span *= 1 if step == 0 else _ceil(step / self.decay_steps)
        p = min(step, span) / span
        end = self.end_learning_rate
        return (self.initial_learning_rate - end) * _power(1 - p, self.power) + end

    @property
    def reaches_zero(self) -> bool:
        return self.initial_learning_rate == 0 or self.end_learning_rate == 0


def _cosine(fraction: float, alpha: float) -> float:
    return (1 - alpha) * 0.5 * (1 + math.cos(math.pi * fraction)) + alpha


@dataclass(frozen=True)
class CosineDecay(Schedule):
    """Without `warmup_target` (null) `warmup_steps` is unused, as in Keras."""

    initial_learning_rate: Annotated[float, real(ge=0)]
    decay_steps: Annotated[float, real(gt=0)]
    alpha: Annotated[float, real(ge=0, le=1)]
    warmup_target: Annotated[float | None, real(ge=0)]
    warmup_steps: Annotated[float, real(ge=0)]
    name: ClassVar[str] = "cosine_decay"

    def __call__(self, step: int) -> float:
        decay, warmup = self.decay_steps, self.warmup_steps
        if self.warmup_target is None:
            return self.initial_learning_rate * _cosine(min(step, decay) / decay, self.alpha)
        s = min(step, decay + warmup)
        if s < warmup:
            start = self.initial_learning_rate
            return (self.warmup_target - start) * (s / warmup) + start
        return self.warmup_target * _cosine((s - warmup) / decay, self.alpha)

    @property
    def reaches_zero(self) -> bool:
        return self.initial_learning_rate == 0 or self.alpha == 0 or self.warmup_target == 0


@dataclass(frozen=True)
class CosineDecayRestarts(Schedule):
    """Periods grow by t_mul ≥ 1 (Keras also takes t_mul < 1, whose periods shrink to a
    finite total, after which its rate is NaN)."""

    initial_learning_rate: Annotated[float, real(ge=0)]
    first_decay_steps: Annotated[float, real(gt=0)]
    t_mul: Annotated[float, real(ge=1)]
    m_mul: Annotated[float, real(ge=0)]
    alpha: Annotated[float, real(ge=0, le=1)]
    name: ClassVar[str] = "cosine_decay_restarts"

    def __call__(self, step: int) -> float:
        fraction = step / self.first_decay_steps  # in units of the first period
        if not math.isfinite(fraction):  # a vanishing first period: no rate (Keras': NaN)
            return math.nan
        t = self.t_mul
        if t == 1:
            i = math.floor(fraction)
            fraction -= i
        else:
            i = self._restart(fraction)
            fraction = (fraction - (1 - t**i) / (1 - t)) / t**i
        decayed = 0.5 * _power(self.m_mul, i) * (1 + math.cos(math.pi * fraction))
        return self.initial_learning_rate * ((1 - self.alpha) * decayed + self.alpha)

    def _restart(self, fraction: float) -> int:
        """The period `fraction` lies in: the i with Σ_{k<i} tᵏ ≤ fraction < Σ_{k≤i} tᵏ
        (Keras' ⌊log(1 − f·(1 − t)) / log t⌋, corrected where rounding misses an edge)."""
        t = self.t_mul

        def start(i: int) -> float:
            return (1 - t**i) / (1 - t)

        i = max(0, math.floor(math.log(1 - fraction * (1 - t)) / math.log(t)))
        while i > 0 and start(i) > fraction:
            i -= 1
        while start(i + 1) <= fraction:
            i += 1
        return i

    @property
    def reaches_zero(self) -> bool:
        return self.initial_learning_rate == 0 or (self.alpha == 0 and self.m_mul == 0)


CLASSES: dict[str, type[Schedule]] = {
    cls.name: cls
    for cls in (
        ExponentialDecay,
        InverseTimeDecay,
        PiecewiseConstantDecay,
        PolynomialDecay,
        CosineDecay,
        CosineDecayRestarts,
    )
}
"""Each schedule's config: the keys of its normalized spec (tests check them)."""


def make(spec: Any, where: str) -> Schedule:
    """The schedule of a normalized `learning_rate` object: its `schedule` name and every
    key of that schedule, nothing else."""
    name = spec.get("schedule") if isinstance(spec, Mapping) else None
    if not isinstance(name, str) or name not in CLASSES:
        raise ConfigError(f"{where}: unknown learning-rate schedule {name!r}")
    return read(CLASSES[name], spec, where, tag="schedule")
