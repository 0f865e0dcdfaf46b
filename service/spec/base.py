"""What every part of the spec shares: limits, one error at a location, the strict
model base class, dispatch of a tagged union, and how names are compared."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializationInfo,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

# ---------------------------------------------------------------- limits and errors


@dataclass(frozen=True)
class SpecLimits:
    """Service limits on a spec; pass your own to ``parse_spec(…, limits=…)``."""

    max_epochs: int = 10_000
    max_layers: int = 1_000
    max_parameters: int = 1_000_000_000  # weights and biases of the whole model


DEFAULT_LIMITS = SpecLimits()


def limits_of(info: ValidationInfo) -> SpecLimits:
    """The limits ``parse_spec`` put in the validation context (else the defaults)."""
    context = info.context
    if isinstance(context, Mapping) and isinstance(context.get("limits"), SpecLimits):
        return context["limits"]
    return DEFAULT_LIMITS


def fail(loc: Sequence[str | int], kind: str, message: str, value: Any = None) -> NoReturn:
    """Raise one validation error at ``loc``, relative to where validation is."""
    error = PydanticCustomError(kind, message)
    raise ValidationError.from_exception_data(
        "JobSpec", [{"type": error, "loc": tuple(loc), "input": value}]
    )


def is_neutral(value: Any, allowed: tuple[Any, ...]) -> bool:
    """``value`` is one of ``allowed``, type included (``0`` is not ``False``)."""
    return any(value == a and type(value) is type(a) for a in allowed)


def name_key(name: str) -> str:
    """The lookup key of a name: case, ``_``, ``-`` and spaces ignored.

    ``"SparseCategoricalCrossentropy"`` and ``"sparse_categorical_crossentropy"``
    have the same key, so Keras class names and function names both resolve.
    """
    return re.sub(r"[\s_\-]", "", name).lower()


# ---------------------------------------------------------------- numbers

FLOAT32_MAX = 3.4028234663852886e38
"""The largest float32. The engine computes in float32 and torch refuses a scalar that
does not fit, so every real hyperparameter it uses lies within ±FLOAT32_MAX."""

Real = Annotated[float, Field(ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
NonNegative = Annotated[float, Field(ge=0, le=FLOAT32_MAX)]
Positive = Annotated[float, Field(gt=0, le=FLOAT32_MAX)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
"""[0, 1): a momentum, a β, a decay rate, a dropout rate; at 1 an average never forgets."""

# ---------------------------------------------------------------- models


class Strict(BaseModel):
    """Strict types, no NaN/Inf, and unknown keys refused by name."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @classmethod
    def _prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Rewrite accepted spellings (Keras keys, aliases) before validation."""
        return data

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = cls._prepare(dict(data))
        expected: list[str] = []
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            choices = alias.choices if isinstance(alias, AliasChoices) else [name]
            expected += [c for c in choices if isinstance(c, str)]
        for key in data:
            if key not in expected:
                fail(
                    (key,),
                    "unknown_field",
                    f"unknown field {key!r}; expected one of: {', '.join(expected)}",
                    data[key],
                )
        return data


def dispatch(
    normalize: Callable[[Any], dict[str, Any]], classes: Mapping[str, type[BaseModel]], key: str
) -> Callable[[Any, ValidationInfo], Any]:
    """Validate a value as the model its ``key`` names (a union without tags in ``loc``)."""
    types = tuple(set(classes.values()))

    def validate(value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, types):
            return value
        data = normalize(value)
        return classes[data[key]].model_validate(data, context=info.context)

    return validate


def _dump(value: BaseModel, info: SerializationInfo) -> dict[str, Any]:
    """Serialize a dispatched union member as its own class (no union guessing)."""
    return value.model_dump(mode=info.mode)


AS_ITSELF = PlainSerializer(_dump)
"""The serializer of a dispatched union: each member dumps as its own class."""
