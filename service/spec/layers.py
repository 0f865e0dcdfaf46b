"""Layers: dense, dropout, activation, batch and layer normalization; activations and
regularizers, the parts of a layer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, Field, PlainValidator
from pydantic_core import PydanticCustomError

from fitq.service.errors import InvalidSpec
from fitq.service.spec import keras
from fitq.service.spec.base import (
    AS_ITSELF,
    Fraction,
    NonNegative,
    Positive,
    Strict,
    dispatch,
    fail,
    name_key,
)
from fitq.service.spec.initializers import Initializer, NamedInitializer
from fitq.service.spec.names import Names

ActivationName = Literal[
    "linear", "relu", "sigmoid", "tanh", "softmax", "leaky_relu", "elu", "selu", "gelu",
    "softplus", "softsign", "silu", "hard_sigmoid",
]  # fmt: skip
ACTIVATIONS: tuple[str, ...] = get_args(ActivationName)
_ACTIVATIONS = Names("activation", ACTIVATIONS, aliases={"swish": "silu"})
_ACTIVATIONS.expected += ", swish"


def _activation(value: Any) -> str:
    return _ACTIVATIONS.lookup(keras.activation_name(value))[0]


Activation = Annotated[ActivationName, BeforeValidator(_activation)]


class Regularizer(Strict):
    """Keras' L1L2: ``l1·Σ|w| + l2·Σw²`` added to the loss (no ½ on the L2 term)."""

    l1: NonNegative = 0.0
    l2: NonNegative = 0.0


def _regularizer(value: Any) -> Any:
    shapes = {"l1": ("l1",), "l2": ("l2",), "l1l2": ("l1", "l2")}
    if isinstance(value, str) and name_key(value) in ("l1", "l2"):
        return {name_key(value): 0.01}  # Keras' default factor for regularizers.get("l2")
    if isinstance(value, str):
        raise PydanticCustomError(
            "unknown_name",
            "unknown regularizer '{name}'; expected 'l1', 'l2' or an object "
            '{{"l1": 0.0, "l2": 0.01}}',
            {"name": value},
        )
    if isinstance(value, Mapping) and "class_name" in value:
        try:
            class_name, config = keras.keras_object(value)
        except InvalidSpec as exc:
            raise PydanticCustomError("keras_object", exc.message) from None
        keys = shapes.get(name_key(class_name))
        if keys is None:
            raise PydanticCustomError(
                "unsupported",
                "regularizer {cls} is not supported; fitq has L1, L2 and L1L2",
                {"cls": class_name},
            )
        default = 0.01 if len(keys) == 1 else 0.0
        params = {k: config.pop(k, default) for k in keys}
        return {**params, **config}  # anything else is refused by Regularizer
    return value


class Dense(Strict):
    """``y = activation(x·kernel + bias)``; kernel ``[in, units]`` as Keras."""

    type: Literal["dense"]
    units: int = Field(ge=1)
    activation: Activation = "linear"
    use_bias: bool = True
    kernel_initializer: Initializer = Field(
        default_factory=lambda: NamedInitializer(name="glorot_uniform")
    )
    bias_initializer: Initializer = Field(default_factory=lambda: NamedInitializer(name="zeros"))
    kernel_regularizer: Annotated[Regularizer | None, BeforeValidator(_regularizer)] = None


class Dropout(Strict):
    type: Literal["dropout"]
    rate: Fraction


class ActivationLayer(Strict):
    type: Literal["activation"]
    activation: Activation


class BatchNormalization(Strict):
    """Keras' convention: ``moving = momentum·moving + (1 − momentum)·batch``."""

    type: Literal["batch_normalization"]
    momentum: float = Field(default=0.99, ge=0, le=1)
    epsilon: Positive = 0.001
    center: bool = True
    scale: bool = True


class LayerNormalization(Strict):
    type: Literal["layer_normalization"]
    epsilon: Positive = 0.001
    center: bool = True
    scale: bool = True


LAYER_CLASSES: dict[str, type[BaseModel]] = {
    "dense": Dense,
    "dropout": Dropout,
    "activation": ActivationLayer,
    "batch_normalization": BatchNormalization,
    "layer_normalization": LayerNormalization,
}
_LAYER_TYPES = Names("layer type", list(LAYER_CLASSES))


def _layer_dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        fail((), "layer_type", f"a layer must be an object with a 'type' ({_LAYER_TYPES.expected})")
    if "type" not in value:
        fail(("type",), "layer_type", f"a layer needs a 'type', one of: {_LAYER_TYPES.expected}")
    try:
        layer_type = _LAYER_TYPES.lookup(value["type"])[0]
    except PydanticCustomError as exc:
        fail(("type",), exc.type, exc.message(), value["type"])
    return {**value, "type": layer_type}


Layer = Annotated[
    Dense | Dropout | ActivationLayer | BatchNormalization | LayerNormalization,
    PlainValidator(
        dispatch(_layer_dict, LAYER_CLASSES, "type"),
        json_schema_input_type=Dense
        | Dropout
        | ActivationLayer
        | BatchNormalization
        | LayerNormalization,
    ),
    AS_ITSELF,
]
