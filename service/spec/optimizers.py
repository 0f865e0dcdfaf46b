"""Optimizers: Keras' names and defaults over torch.optim's update rules.

Each model lists the keys the engine's optimizer of that name takes, all filled in
after validation. Every optimizer has Keras' common keys: ``learning_rate`` (a number,
or a schedule — ``schedules.py``), ``weight_decay``, and gradient clipping
(``clipnorm``, ``clipvalue``, ``global_clipnorm``: null is off, at most one is set, as
Keras 3 refuses more). fitq's own aliases: ``"momentum"`` is sgd with momentum 0.9,
``"gd"`` is sgd on the whole dataset (``fit.batch_size: null``, set by ``job.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SerializationInfo,
    TypeAdapter,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from fitq.service.spec.base import (
    AS_ITSELF,
    FLOAT32_MAX,
    Fraction,
    NonNegative,
    Positive,
    Strict,
    dispatch,
    fail,
)
from fitq.service.spec.names import Names, keras_config
from fitq.service.spec.schedules import AnySchedule, Schedule, reaches_zero

_NUMBER = TypeAdapter(Positive, config=ConfigDict(strict=True, allow_inf_nan=False))
_SCHEDULE: TypeAdapter[Any] = TypeAdapter(Schedule)


def _learning_rate(value: Any, info: ValidationInfo) -> Any:
    """A number > 0, or a schedule (fitq's ``{"schedule": …}`` or Keras' object)."""
    if isinstance(value, Mapping | BaseModel):
        return _SCHEDULE.validate_python(value, context=info.context)
    return _NUMBER.validate_python(value)


def _dump_learning_rate(value: Any, info: SerializationInfo) -> Any:
    return value.model_dump(mode=info.mode) if isinstance(value, BaseModel) else value


LearningRate = Annotated[
    Positive | AnySchedule,
    PlainValidator(_learning_rate, json_schema_input_type=Positive | AnySchedule),
    PlainSerializer(_dump_learning_rate),
]
Beta1Lion = Annotated[float, Field(gt=0, le=1)]
NonPositive = Annotated[float, Field(ge=-FLOAT32_MAX, le=0)]

CLIP_KEYS = ("clipnorm", "clipvalue", "global_clipnorm")


class _Optimizer(Strict):
    """Keras' keys common to every optimizer (``name`` is each one's literal)."""

    name: str
    learning_rate: LearningRate = 0.001
    weight_decay: NonNegative = 0.0
    clipnorm: float | None = Field(default=None, gt=0, le=FLOAT32_MAX)
    clipvalue: float | None = Field(default=None, gt=0, le=FLOAT32_MAX)
    global_clipnorm: float | None = Field(default=None, gt=0, le=FLOAT32_MAX)

    @model_validator(mode="after")
    def _one_clip(self) -> _Optimizer:
        clips = [k for k in CLIP_KEYS if getattr(self, k) is not None]
        if len(clips) > 1:
            fail(
                (clips[1],),
                "clip_twice",
                f"at most one of clipnorm, clipvalue, global_clipnorm may be set, as in "
                f"Keras 3 (got {' and '.join(clips)})",
            )
        return self


class SGD(_Optimizer):
    """torch.optim.SGD (dampening 0); Keras' momentum/nesterov names."""

    name: Literal["sgd"]
    learning_rate: LearningRate = 0.01
    momentum: Fraction = 0.0
    nesterov: bool = False

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGD:
        if self.nesterov and self.momentum == 0:
            fail(("nesterov",), "nesterov", "nesterov needs momentum > 0 (got momentum 0.0)")
        return self


class Adagrad(_Optimizer):
    """torch.optim.Adagrad; Keras' initial_accumulator_value, epsilon → eps."""

    name: Literal["adagrad"]
    initial_accumulator_value: NonNegative = 0.1
    epsilon: Positive = 1e-7


class RMSprop(_Optimizer):
    """torch.optim.RMSprop; Keras' rho → alpha, epsilon → eps."""

    name: Literal["rmsprop"]
    rho: Fraction = 0.9
    momentum: Fraction = 0.0
    epsilon: Positive = 1e-7
    centered: bool = False


class Adadelta(_Optimizer):
    """torch.optim.Adadelta (the same rule as Keras'); Keras' defaults."""

    name: Literal["adadelta"]
    rho: Fraction = 0.95
    epsilon: Positive = 1e-7


class Adam(_Optimizer):
    """torch.optim.Adam; Keras' beta_1/beta_2 → betas, epsilon → eps."""

    name: Literal["adam"]
    beta_1: Fraction = 0.9
    beta_2: Fraction = 0.999
    epsilon: Positive = 1e-7
    amsgrad: bool = False


class AdamW(Adam):
    """torch.optim.AdamW (decoupled weight decay); Keras 3's default weight_decay."""

    name: Literal["adamw"]  # type: ignore[assignment]
    weight_decay: NonNegative = 0.004


class Adamax(_Optimizer):
    """torch.optim.Adamax; Keras' beta_1/beta_2 → betas, epsilon → eps."""

    name: Literal["adamax"]
    beta_1: Fraction = 0.9
    beta_2: Fraction = 0.999
    epsilon: Positive = 1e-7


class Nadam(_Optimizer):
    """torch.optim.NAdam with Keras' momentum schedule (0.96ᵗ)."""

    name: Literal["nadam"]
    beta_1: Fraction = 0.9
    beta_2: Fraction = 0.999
    epsilon: Positive = 1e-7


class Lion(_Optimizer):
    """Lion (Chen et al., 2023), as Keras: 0 < beta_1 ≤ 1; decoupled weight decay."""

    name: Literal["lion"]
    beta_1: Beta1Lion = 0.9
    beta_2: Fraction = 0.99


class Ftrl(_Optimizer):
    """Keras' Ftrl. ``initial_accumulator_value`` > 0 (Keras also takes 0, which divides
    0 by 0 for a weight whose gradient is 0); a schedule must never reach 0."""

    name: Literal["ftrl"]
    learning_rate_power: NonPositive = -0.5
    initial_accumulator_value: Positive = 0.1
    l1_regularization_strength: NonNegative = 0.0
    l2_regularization_strength: NonNegative = 0.0
    l2_shrinkage_regularization_strength: NonNegative = 0.0
    beta: NonNegative = 0.0

    @model_validator(mode="after")
    def _rate_never_zero(self) -> Ftrl:
        rate = self.learning_rate
        if isinstance(rate, BaseModel) and reaches_zero(rate):
            fail(
                ("learning_rate",),
                "ftrl_schedule",
                f"ftrl divides by the learning rate, and this {getattr(rate, 'schedule', '')} "
                "schedule reaches 0 (a rate, alpha, end_learning_rate or warmup start of 0)",
            )
        return self


OPTIMIZER_CLASSES: dict[str, type[BaseModel]] = {
    "sgd": SGD,
    "adagrad": Adagrad,
    "rmsprop": RMSprop,
    "adadelta": Adadelta,
    "adam": Adam,
    "adamw": AdamW,
    "adamax": Adamax,
    "nadam": Nadam,
    "lion": Lion,
    "ftrl": Ftrl,
}
OPTIMIZERS = Names(
    "optimizer",
    list(OPTIMIZER_CLASSES),
    aliases={"momentum": "sgd", "gd": "sgd"},
    presets={"momentum": {"momentum": 0.9}, "gd": {}},
)


def _keras_optimizer(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    if config.get("weight_decay", 0) is None:
        del config["weight_decay"]
    decay = config.pop("decay", 0.0)
    if decay:  # tf.keras 2's legacy decay: lr / (1 + decay·iterations)
        rate = config.get("learning_rate")
        if not isinstance(rate, int | float) or isinstance(rate, bool) or decay < 0:
            raise PydanticCustomError(
                "unsupported",
                "optimizer {cls}: decay={decay} needs a number learning_rate (a "
                "schedule has its own decay)",
                {"cls": class_name, "decay": decay},
            )
        config["learning_rate"] = {
            "schedule": "inverse_time_decay",
            "initial_learning_rate": rate,
            "decay_steps": 1.0,
            "decay_rate": decay,
        }
    return keras_config(
        "optimizer",
        class_name,
        config,
        ignored=frozenset({"name", "ema_momentum", "jit_compile"}),
        neutral={
            "use_ema": (False,),
            "ema_overwrite_frequency": (None,),
            "loss_scale_factor": (None,),
            "gradient_accumulation_steps": (None,),
            "is_legacy_optimizer": (False,),
        },
    )


def _optimizer_dict(value: Any) -> dict[str, Any]:
    return OPTIMIZERS.object(value, _keras_optimizer)


AnyOptimizer = SGD | Adagrad | RMSprop | Adadelta | Adam | AdamW | Adamax | Nadam | Lion | Ftrl
Optimizer = Annotated[
    AnyOptimizer,
    PlainValidator(
        dispatch(_optimizer_dict, OPTIMIZER_CLASSES, "name"),
        json_schema_input_type=str | AnyOptimizer,
    ),
    AS_ITSELF,
]
