"""Initializers: Keras' names and defaults, and Keras' ``VarianceScaling`` spellings of them.

A bare name becomes ``{"name": …}`` with its parameters' defaults filled in; the
job's seed decides every draw, so a Keras initializer's own ``seed`` is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

from fitq.service.errors import InvalidSpec
from fitq.service.spec import keras
from fitq.service.spec.base import (
    AS_ITSELF,
    FLOAT32_MAX,
    NonNegative,
    Real,
    Strict,
    dispatch,
    fail,
    name_key,
)
from fitq.service.spec.names import Names, keras_config

InitializerName = Literal[
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
    "lecun_normal", "zeros", "ones",
]  # fmt: skip


class NamedInitializer(Strict):
    name: InitializerName


class ConstantInitializer(Strict):
    name: Literal["constant"]
    value: Real = 0.0


class RandomNormalInitializer(Strict):
    name: Literal["random_normal"]
    mean: Real = 0.0
    stddev: NonNegative = 0.05


class TruncatedNormalInitializer(Strict):
    name: Literal["truncated_normal"]
    mean: Real = 0.0
    stddev: NonNegative = 0.05


class RandomUniformInitializer(Strict):
    name: Literal["random_uniform"]
    minval: Real = -0.05
    maxval: Real = 0.05

    @model_validator(mode="after")
    def _ordered(self) -> RandomUniformInitializer:
        if self.minval > self.maxval:
            fail(("maxval",), "range", f"must be ≥ minval ({self.minval}), got {self.maxval}")
        if self.maxval - self.minval > FLOAT32_MAX:
            fail(
                ("maxval",),
                "range",
                f"maxval − minval must be ≤ {FLOAT32_MAX:.8g} (the largest float32), got "
                f"{self.maxval - self.minval:.8g}",
            )
        return self


INITIALIZER_CLASSES: dict[str, type[BaseModel]] = {
    **{n: NamedInitializer for n in get_args(InitializerName)},
    "constant": ConstantInitializer,
    "random_normal": RandomNormalInitializer,
    "truncated_normal": TruncatedNormalInitializer,
    "random_uniform": RandomUniformInitializer,
}
_INITIALIZERS = Names(
    "initializer",
    list(INITIALIZER_CLASSES),
    aliases={
        "zero": "zeros",
        "one": "ones",
        "normal": "random_normal",
        "uniform": "random_uniform",
    },
)
# Keras' VarianceScaling(scale, mode, distribution) spellings of the named ones.
_VARIANCE_SCALING = {
    (1.0, "fan_avg", "uniform"): "glorot_uniform",
    (1.0, "fan_avg", "truncated_normal"): "glorot_normal",
    (2.0, "fan_in", "uniform"): "he_uniform",
    (2.0, "fan_in", "truncated_normal"): "he_normal",
    (1.0, "fan_in", "uniform"): "lecun_uniform",
    (1.0, "fan_in", "truncated_normal"): "lecun_normal",
}


def _keras_initializer(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    # ``seed`` is dropped: the job's seed decides every initial weight in fitq.
    return keras_config(
        "initializer",
        class_name,
        config,
        ignored=frozenset({"seed", "dtype"}),
        neutral={"input_axes": (None,), "output_axes": (None,)},
    )


def _initializer_dict(value: Any) -> dict[str, Any]:
    if (
        isinstance(value, Mapping)
        and isinstance(value.get("class_name"), str)
        and name_key(value["class_name"]) == "variancescaling"
    ):
        try:
            _, config = keras.keras_object(value)
        except InvalidSpec as exc:
            raise PydanticCustomError("keras_object", exc.message) from None
        distribution = config.get("distribution", "truncated_normal")
        distribution = "truncated_normal" if distribution == "normal" else distribution
        key = tuple(
            v if isinstance(v, str | int | float) and not isinstance(v, bool) else repr(v)
            for v in (config.get("scale", 1.0), config.get("mode", "fan_in"), distribution)
        )
        if key not in _VARIANCE_SCALING:
            raise PydanticCustomError(
                "unsupported",
                "VarianceScaling(scale={scale}, mode={mode}, distribution={dist}) has no fitq "
                "equivalent; fitq has glorot_*, he_* and lecun_* (uniform and normal)",
                {
                    "scale": json.dumps(key[0]),
                    "mode": json.dumps(key[1]),
                    "dist": json.dumps(key[2]),
                },
            )
        return {"name": _VARIANCE_SCALING[key]}
    return _INITIALIZERS.object(value, _keras_initializer)


Initializer = Annotated[
    NamedInitializer
    | ConstantInitializer
    | RandomNormalInitializer
    | TruncatedNormalInitializer
    | RandomUniformInitializer,
    PlainValidator(
        dispatch(_initializer_dict, INITIALIZER_CLASSES, "name"),
        json_schema_input_type=str
        | NamedInitializer
        | ConstantInitializer
        | RandomNormalInitializer
        | TruncatedNormalInitializer
        | RandomUniformInitializer,
    ),
    AS_ITSELF,
]
