"""Optimizers: Keras' names and defaults over torch.optim's update rules.

Each model lists the keys the engine's optimizer of that name takes, all filled in
after validation. fitq's own aliases: ``"momentum"`` is sgd with momentum 0.9, ``"gd"``
is sgd on the whole dataset (``fit.batch_size: null``, set by ``job.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

from fitq.service.spec.base import (
    AS_ITSELF,
    Fraction,
    NonNegative,
    Positive,
    Strict,
    dispatch,
    fail,
)
from fitq.service.spec.names import Names, keras_config


class SGD(Strict):
    """torch.optim.SGD (dampening 0); Keras' momentum/nesterov names."""

    name: Literal["sgd"]
    learning_rate: Positive = 0.01
    momentum: Fraction = 0.0
    nesterov: bool = False
    weight_decay: NonNegative = 0.0

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGD:
        if self.nesterov and self.momentum == 0:
            fail(("nesterov",), "nesterov", "nesterov needs momentum > 0 (got momentum 0.0)")
        return self


class Adagrad(Strict):
    """torch.optim.Adagrad; Keras' initial_accumulator_value, epsilon → eps."""

    name: Literal["adagrad"]
    learning_rate: Positive = 0.001
    initial_accumulator_value: NonNegative = 0.1
    epsilon: Positive = 1e-7
    weight_decay: NonNegative = 0.0


class RMSprop(Strict):
    """torch.optim.RMSprop; Keras' rho → alpha, epsilon → eps."""

    name: Literal["rmsprop"]
    learning_rate: Positive = 0.001
    rho: Fraction = 0.9
    momentum: Fraction = 0.0
    epsilon: Positive = 1e-7
    centered: bool = False
    weight_decay: NonNegative = 0.0


class Adam(Strict):
    """torch.optim.Adam; Keras' beta_1/beta_2 → betas, epsilon → eps."""

    name: Literal["adam"]
    learning_rate: Positive = 0.001
    beta_1: Fraction = 0.9
    beta_2: Fraction = 0.999
    epsilon: Positive = 1e-7
    amsgrad: bool = False
    weight_decay: NonNegative = 0.0


class AdamW(Adam):
    """torch.optim.AdamW (decoupled weight decay); Keras 3's default weight_decay."""

    name: Literal["adamw"]  # type: ignore[assignment]
    weight_decay: NonNegative = 0.004


OPTIMIZER_CLASSES: dict[str, type[BaseModel]] = {
    "sgd": SGD,
    "adagrad": Adagrad,
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
}
OPTIMIZERS = Names(
    "optimizer",
    list(OPTIMIZER_CLASSES),
    aliases={"momentum": "sgd", "gd": "sgd"},
    presets={"momentum": {"momentum": 0.9}, "gd": {}},
)


def _keras_optimizer(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    rate = config.get("learning_rate")
    if isinstance(rate, Mapping):
        raise PydanticCustomError(
            "unsupported",
            "learning-rate schedules ({schedule}) are not supported; give a number",
            {"schedule": rate.get("class_name", "a schedule")},
        )
    if config.get("weight_decay", 0) is None:
        del config["weight_decay"]
    return keras_config(
        "optimizer",
        class_name,
        config,
        ignored=frozenset({"name", "ema_momentum", "jit_compile"}),
        neutral={
            "clipnorm": (None,),
            "global_clipnorm": (None,),
            "clipvalue": (None,),
            "use_ema": (False,),
            "ema_overwrite_frequency": (None,),
            "loss_scale_factor": (None,),
            "gradient_accumulation_steps": (None,),
            "is_legacy_optimizer": (False,),
            "decay": (0.0, 0),
        },
    )


def _optimizer_dict(value: Any) -> dict[str, Any]:
    return OPTIMIZERS.object(value, _keras_optimizer)


Optimizer = Annotated[
    SGD | Adagrad | RMSprop | Adam | AdamW,
    PlainValidator(
        dispatch(_optimizer_dict, OPTIMIZER_CLASSES, "name"),
        json_schema_input_type=str | SGD | Adagrad | RMSprop | Adam | AdamW,
    ),
    AS_ITSELF,
]
