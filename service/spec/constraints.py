"""Weight constraints on a dense layer: Keras' MaxNorm, NonNeg, UnitNorm and MinMaxNorm,
applied after every update (``kernel_constraint``, ``bias_constraint``).

A bare name becomes ``{"name": …}`` with Keras' defaults. ``axis`` is Keras' (0: each
unit's incoming weights, Keras' default for a kernel ``[in, units]``); the dense layer
resolves a negative axis against its weight (``-1`` is 1 on a kernel, 0 on a bias).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

from fitq.service.spec.base import AS_ITSELF, NonNegative, Strict, dispatch, fail
from fitq.service.spec.names import Names, keras_config


def _not_bool(value: Any) -> Any:
    """A Literal of ints takes ``false`` as 0 (they are equal in Python): refuse it."""
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "must be an integer (got {value})", {"value": value})
    return value


Axis = Annotated[Literal[-2, -1, 0, 1], BeforeValidator(_not_bool)]


class MaxNorm(Strict):
    """w · clip(‖w‖, 0, max_value) / (ε + ‖w‖), norms over ``axis``."""

    name: Literal["max_norm"]
    max_value: NonNegative = 2.0
    axis: Axis = 0


class NonNeg(Strict):
    """max(w, 0)."""

    name: Literal["non_neg"]


class UnitNorm(Strict):
    """w / (ε + ‖w‖), norms over ``axis``."""

    name: Literal["unit_norm"]
    axis: Axis = 0


class MinMaxNorm(Strict):
    """w · (rate·clip(‖w‖, min_value, max_value) + (1 − rate)·‖w‖) / (ε + ‖w‖)."""

    name: Literal["min_max_norm"]
    min_value: NonNegative = 0.0
    max_value: NonNegative = 1.0
    rate: Annotated[float, Field(ge=0, le=1)] = 1.0
    axis: Axis = 0

    @model_validator(mode="after")
    def _ordered(self) -> MinMaxNorm:
        if self.min_value > self.max_value:
            fail(
                ("max_value",),
                "range",
                f"must be ≥ min_value ({self.min_value}), got {self.max_value}",
            )
        return self


CONSTRAINT_CLASSES: dict[str, type[BaseModel]] = {
    "max_norm": MaxNorm,
    "non_neg": NonNeg,
    "unit_norm": UnitNorm,
    "min_max_norm": MinMaxNorm,
}
_CONSTRAINTS = Names("constraint", list(CONSTRAINT_CLASSES))


def _keras_constraint(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    return keras_config("constraint", class_name, config, ignored=frozenset(), neutral={})


def _constraint_dict(value: Any) -> dict[str, Any]:
    return _CONSTRAINTS.object(value, _keras_constraint)


Constraint = Annotated[
    MaxNorm | NonNeg | UnitNorm | MinMaxNorm,
    PlainValidator(
        dispatch(_constraint_dict, CONSTRAINT_CLASSES, "name"),
        json_schema_input_type=str | MaxNorm | NonNeg | UnitNorm | MinMaxNorm,
    ),
    AS_ITSELF,
]
