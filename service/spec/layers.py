"""Layers: dense, dropout, activation, batch and layer normalization, and Keras' layers
that fit a dense net on flat rows — relu, leaky_relu, elu, prelu, flatten, rescaling,
normalization, gaussian_noise, gaussian_dropout, alpha_dropout, activity_regularization —
each with Keras' parameters and defaults; activations, regularizers and constraints, the
parts of a layer. Type names are Keras' class names in snake case (``LeakyReLU`` and
``leaky_relu`` both name one)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, Field, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

from fitq.service.errors import InvalidSpec
from fitq.service.spec import keras
from fitq.service.spec.base import (
    AS_ITSELF,
    Fraction,
    NonNegative,
    Positive,
    Real,
    Strict,
    dispatch,
    fail,
    name_key,
)
from fitq.service.spec.constraints import Constraint
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
    kernel_constraint: Constraint | None = None
    bias_constraint: Constraint | None = None

    @model_validator(mode="after")
    def _constraint_axes(self) -> Dense:
        """A negative axis as the weight's own: -1 is 1 on a kernel [in, units], 0 on a bias."""
        for key, rank in (("kernel_constraint", 2), ("bias_constraint", 1)):
            constraint = getattr(self, key)
            axis = getattr(constraint, "axis", None)
            if axis is None:
                continue
            if not -rank <= axis < rank:
                fail(
                    (key, "axis"),
                    "axis",
                    f"a bias has one axis (0 or -1), got {axis}",
                    axis,
                )
            constraint.axis = axis % rank
        return self


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


# ---------------------------------------------------------------- Keras' activation layers


class ReLU(Strict):
    """Keras' ReLU: min(x, max_value) above ``threshold``, ``negative_slope``·(x −
    threshold) up to it (Keras refuses a negative value of any of the three)."""

    type: Literal["relu"]
    max_value: NonNegative | None = None
    negative_slope: NonNegative = 0.0
    threshold: NonNegative = 0.0


class LeakyReLU(Strict):
    """x for x > 0, ``negative_slope``·x otherwise; the layer's default slope is Keras'
    0.3 (the ``leaky_relu`` activation's is 0.2). tf.keras 2 calls it ``alpha``."""

    type: Literal["leaky_relu"]
    negative_slope: NonNegative = 0.3

    @classmethod
    def _prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        if "alpha" in data and "negative_slope" not in data:
            data["negative_slope"] = data.pop("alpha")
        return data


class ELU(Strict):
    """x for x > 0, ``alpha``·(eˣ − 1) otherwise."""

    type: Literal["elu"]
    alpha: Real = 1.0


class PReLU(Strict):
    """relu(x) − α·relu(−x) with α a trained weight per unit (Keras' shared_axes None)."""

    type: Literal["prelu"]
    alpha_initializer: Initializer = Field(default_factory=lambda: NamedInitializer(name="zeros"))


# ---------------------------------------------------------------- reshaping, preprocessing


class Flatten(Strict):
    """Rows are stored flat: the identity, where a multi-dimensional input becomes rows."""

    type: Literal["flatten"]


class Rescaling(Strict):
    """x·scale + offset (Keras' scale has no default)."""

    type: Literal["rescaling"]
    scale: Real
    offset: Real = 0.0


def _values(value: Any) -> Any:
    """A number, as Keras broadcasts it, is one value for every feature."""
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else value


class Normalization(Strict):
    """Keras' Normalization with its statistics given: (x − mean) / max(√variance, 1e-7),
    or mean + x·max(√variance, 1e-7) with ``invert``. One value per feature once the
    model is read (a single value is every feature's)."""

    type: Literal["normalization"]
    mean: Annotated[list[Real], BeforeValidator(_values), Field(min_length=1)]
    variance: Annotated[list[NonNegative], BeforeValidator(_values), Field(min_length=1)]
    invert: bool = False

    @model_validator(mode="after")
    def _same_length(self) -> Normalization:
        if len(self.mean) != len(self.variance):
            fail(
                ("variance",),
                "length",
                f"needs as many values as mean ({len(self.mean)}), got {len(self.variance)}",
            )
        return self


# ---------------------------------------------------------------- noise and regularization


class GaussianNoise(Strict):
    """Training adds N(0, stddev²) noise; the identity at inference."""

    type: Literal["gaussian_noise"]
    stddev: NonNegative


class GaussianDropout(Strict):
    """Training multiplies by N(1, rate / (1 − rate)) noise; the identity at inference."""

    type: Literal["gaussian_dropout"]
    rate: Fraction


class AlphaDropout(Strict):
    """Dropout that keeps SELU's mean and variance (Keras' AlphaDropout)."""

    type: Literal["alpha_dropout"]
    rate: Fraction


class ActivityRegularization(Strict):
    """The identity; adds l1·Σ|x| + l2·Σx² ÷ the batch's rows to the loss (Keras 3)."""

    type: Literal["activity_regularization"]
    l1: NonNegative = 0.0
    l2: NonNegative = 0.0


LAYER_CLASSES: dict[str, type[BaseModel]] = {
    "dense": Dense,
    "dropout": Dropout,
    "activation": ActivationLayer,
    "batch_normalization": BatchNormalization,
    "layer_normalization": LayerNormalization,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "elu": ELU,
    "prelu": PReLU,
    "flatten": Flatten,
    "rescaling": Rescaling,
    "normalization": Normalization,
    "gaussian_noise": GaussianNoise,
    "gaussian_dropout": GaussianDropout,
    "alpha_dropout": AlphaDropout,
    "activity_regularization": ActivityRegularization,
}
ELEMENTWISE = frozenset(
    {"dropout", "relu", "leaky_relu", "elu", "rescaling", "gaussian_noise", "gaussian_dropout",
     "alpha_dropout", "activity_regularization"}
)  # fmt: skip
"""Layer types that act on each value alone, whatever the input's shape (so also before a
flatten), besides activation layers other than softmax."""
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


_LAYER_UNION = (
    Dense | Dropout | ActivationLayer | BatchNormalization | LayerNormalization | ReLU
    | LeakyReLU | ELU | PReLU | Flatten | Rescaling | Normalization | GaussianNoise
    | GaussianDropout | AlphaDropout | ActivityRegularization
)  # fmt: skip

Layer = Annotated[
    _LAYER_UNION,
    PlainValidator(
        dispatch(_layer_dict, LAYER_CLASSES, "type"), json_schema_input_type=_LAYER_UNION
    ),
    AS_ITSELF,
]
