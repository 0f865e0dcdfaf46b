"""Learning-rate schedules: an optimizer's ``learning_rate`` may be one, as in Keras.

fitq's form names the schedule under ``"schedule"``::

    {"schedule": "exponential_decay", "initial_learning_rate": 0.1,
     "decay_steps": 1000, "decay_rate": 0.96}

Keras' serialized form — what ``optimizer.get_config()`` and a ``compile_config`` hold —
is accepted too: ``{"module": "keras.optimizers.schedules", "class_name":
"ExponentialDecay", "config": {…}}`` (its ``name`` is dropped). Keras' names, keys and
defaults; a schedule is evaluated at each optimizer step (Keras' ``iterations``). The
engine's ``worker/engine/optimizers/schedules.py`` gives each formula.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

from fitq.service.errors import InvalidSpec
from fitq.service.spec import keras
from fitq.service.spec.base import (
    AS_ITSELF,
    FLOAT32_MAX,
    NonNegative,
    Positive,
    Real,
    Strict,
    dispatch,
    fail,
)
from fitq.service.spec.names import Names

Fraction01 = Annotated[float, Field(ge=0, le=1)]
"""[0, 1]: a fraction of the initial rate (cosine's α)."""

MAX_PIECES = 1_000  # boundaries of a piecewise-constant schedule


class ExponentialDecay(Strict):
    """Keras' ExponentialDecay: lr₀ · decay_rate^(step / decay_steps)."""

    schedule: Literal["exponential_decay"]
    initial_learning_rate: NonNegative
    decay_steps: Positive
    decay_rate: Positive
    staircase: bool = False


class InverseTimeDecay(Strict):
    """Keras' InverseTimeDecay: lr₀ / (1 + decay_rate · step / decay_steps)."""

    schedule: Literal["inverse_time_decay"]
    initial_learning_rate: NonNegative
    decay_steps: Positive
    decay_rate: NonNegative
    staircase: bool = False


class PiecewiseConstantDecay(Strict):
    """Keras' PiecewiseConstantDecay: ``values[i]`` while ``boundaries[i-1] < step ≤
    boundaries[i]``; boundaries strictly increasing, one value more than boundaries."""

    schedule: Literal["piecewise_constant_decay"]
    boundaries: list[Real] = Field(min_length=1, max_length=MAX_PIECES)
    values: list[NonNegative] = Field(min_length=2, max_length=MAX_PIECES + 1)

    @model_validator(mode="after")
    def _pieces(self) -> PiecewiseConstantDecay:
        b, v = self.boundaries, self.values
        if len(v) != len(b) + 1:
            fail(
                ("values",),
                "pieces",
                f"values must have one more entry than boundaries (got {len(v)} values "
                f"and {len(b)} boundaries)",
            )
        if any(hi <= lo for lo, hi in zip(b, b[1:], strict=False)):
            fail(("boundaries",), "pieces", f"boundaries must be strictly increasing (got {b})")
        return self


class PolynomialDecay(Strict):
    """Keras' PolynomialDecay: from lr₀ to end_learning_rate over decay_steps."""

    schedule: Literal["polynomial_decay"]
    initial_learning_rate: NonNegative
    decay_steps: Positive
    end_learning_rate: NonNegative = 0.0001
    power: NonNegative = 1.0
    cycle: bool = False


class CosineDecay(Strict):
    """Keras' CosineDecay, with its linear warmup to ``warmup_target`` (null: none)."""

    schedule: Literal["cosine_decay"]
    initial_learning_rate: NonNegative
    decay_steps: Positive
    alpha: Fraction01 = 0.0
    warmup_target: float | None = Field(default=None, ge=0, le=FLOAT32_MAX)
    warmup_steps: NonNegative = 0.0


class CosineDecayRestarts(Strict):
    """Keras' CosineDecayRestarts (SGDR); periods grow by ``t_mul`` ≥ 1 (Keras also
    takes t_mul < 1, whose periods shrink to a finite total, then its rate is NaN)."""

    schedule: Literal["cosine_decay_restarts"]
    initial_learning_rate: NonNegative
    first_decay_steps: Positive
    t_mul: Annotated[float, Field(ge=1, le=FLOAT32_MAX)] = 2.0
    m_mul: NonNegative = 1.0
    alpha: Fraction01 = 0.0


SCHEDULE_CLASSES: dict[str, type[BaseModel]] = {
    "exponential_decay": ExponentialDecay,
    "inverse_time_decay": InverseTimeDecay,
    "piecewise_constant_decay": PiecewiseConstantDecay,
    "polynomial_decay": PolynomialDecay,
    "cosine_decay": CosineDecay,
    "cosine_decay_restarts": CosineDecayRestarts,
}
SCHEDULES = Names("learning-rate schedule", list(SCHEDULE_CLASSES))
AnySchedule = (
    ExponentialDecay
    | InverseTimeDecay
    | PiecewiseConstantDecay
    | PolynomialDecay
    | CosineDecay
    | CosineDecayRestarts
)


def reaches_zero(schedule: BaseModel) -> bool:
    """Whether some step's rate is exactly 0 (the engine's ``Schedule.reaches_zero``)."""
    if getattr(schedule, "initial_learning_rate", None) == 0:
        return True
    if isinstance(schedule, PiecewiseConstantDecay):
        return 0 in schedule.values
    if isinstance(schedule, PolynomialDecay):
        return schedule.end_learning_rate == 0
    if isinstance(schedule, CosineDecay):
        return schedule.alpha == 0 or schedule.warmup_target == 0
    if isinstance(schedule, CosineDecayRestarts):
        return schedule.alpha == 0 and schedule.m_mul == 0
    return False


def schedule_dict(value: Any) -> dict[str, Any]:
    """fitq's ``{"schedule": …}`` or Keras' ``{"class_name", "config"}`` → fitq's form
    with the canonical name (defaults are filled by the model)."""
    if isinstance(value, Mapping) and "class_name" in value:
        try:
            class_name, config = keras.keras_object(value)
        except InvalidSpec as exc:
            raise PydanticCustomError("keras_object", exc.message) from None
        name, _ = SCHEDULES.lookup(class_name)
        config.pop("name", None)
        return {"schedule": name, **config}
    if isinstance(value, Mapping) and "schedule" in value:
        name, _ = SCHEDULES.lookup(value["schedule"])
        return {**value, "schedule": name}
    raise PydanticCustomError(
        "schedule_type",
        "a learning-rate schedule is an object with a 'schedule' (one of: {expected}) or "
        "Keras' serialized schedule (class_name and config)",
        {"expected": SCHEDULES.expected},
    )


Schedule = Annotated[
    AnySchedule,
    PlainValidator(
        dispatch(schedule_dict, SCHEDULE_CLASSES, "schedule"),
        json_schema_input_type=AnySchedule,
    ),
    AS_ITSELF,
]
