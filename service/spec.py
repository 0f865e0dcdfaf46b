"""The job spec: pydantic models that validate what ``POST /v1/jobs`` receives (SPEC §2).

``JobSpec.model_dump(mode="json")`` is the normalized spec of
docs/spec-contract.md — Keras names and defaults, aliases resolved, every
default filled in, a ``keras_json`` model converted — the one shape that is
stored and that the engine reads. The user-facing format is docs/spec.md.

Two ways in, the same validation:

- ``parse_spec(body)`` — raw bytes/str/dict → ``JobSpec``, or one
  ``InvalidSpec`` (422) whose message reads ``"model.layers.1.units: must be
  ≥ 1 (got 0)"`` and whose ``loc`` is ``["body", "model", "layers", 1, "units"]``.
- ``JobSpec`` as a FastAPI body: every error carries the field's ``loc`` and a
  readable ``msg``; ``validation_errors(exc)`` renders a ``ValidationError`` the
  same way ``parse_spec`` does, for a ``RequestValidationError`` handler.

Names are matched ignoring case, ``_``, ``-`` and spaces, so Keras' class names
(``"SparseCategoricalCrossentropy"``, ``"RMSprop"``, ``"GlorotUniform"``) and
function names (``"sparse_categorical_crossentropy"``) both resolve. Unknown
keys are refused everywhere, with the list of the expected ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NoReturn, get_args

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    SerializationInfo,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from fitq.service import keras_import
from fitq.service.errors import InvalidSpec
from fitq.service.keras_import import name_key

# ---------------------------------------------------------------- limits and errors


@dataclass(frozen=True)
class SpecLimits:
    """Service limits on a spec; pass your own to ``parse_spec(…, limits=…)``."""

    max_epochs: int = 10_000
    max_layers: int = 1_000
    max_parameters: int = 1_000_000_000  # weights and biases of the whole model


DEFAULT_LIMITS = SpecLimits()


def _limits(info: ValidationInfo) -> SpecLimits:
    context = info.context
    if isinstance(context, Mapping) and isinstance(context.get("limits"), SpecLimits):
        return context["limits"]
    return DEFAULT_LIMITS


def _fail(loc: Sequence[str | int], kind: str, message: str, value: Any = None) -> NoReturn:
    """Raise one validation error at ``loc``, relative to where validation is."""
    error = PydanticCustomError(kind, message)
    raise ValidationError.from_exception_data(
        "JobSpec", [{"type": error, "loc": tuple(loc), "input": value}]
    )


def _neutral(value: Any, allowed: tuple[Any, ...]) -> bool:
    return any(value == a and type(value) is type(a) for a in allowed)


class _Strict(BaseModel):
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
                _fail(
                    (key,),
                    "unknown_field",
                    f"unknown field {key!r}; expected one of: {', '.join(expected)}",
                    data[key],
                )
        return data


# ---------------------------------------------------------------- names


class _Names:
    """One kind of name (activation, loss, …): canonical names, aliases, presets."""

    def __init__(
        self,
        kind: str,
        canonical: Sequence[str],
        aliases: Mapping[str, str] | None = None,
        presets: Mapping[str, dict[str, Any]] | None = None,
    ):
        self.kind = kind
        self.table = {name_key(n): n for n in canonical}
        self.table |= {name_key(a): n for a, n in (aliases or {}).items()}
        self.presets = {name_key(a): p for a, p in (presets or {}).items()}
        self.expected = ", ".join([*canonical, *(presets or {})])

    def lookup(self, value: Any) -> tuple[str, dict[str, Any]]:
        """A user's spelling → (canonical name, preset parameters)."""
        if not isinstance(value, str):
            raise PydanticCustomError(
                "name_type",
                "{kind} must be a name, one of: {expected}",
                {"kind": self.kind, "expected": self.expected},
            )
        found = self.table.get(name_key(value))
        if found is None:
            raise PydanticCustomError(
                "unknown_name",
                "unknown {kind} '{name}'; expected one of: {expected}",
                {"kind": self.kind, "name": value, "expected": self.expected},
            )
        return found, dict(self.presets.get(name_key(value), {}))

    def object(
        self, value: Any, keras_config: Callable[[str, dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        """A bare name, ``{"name": …, params}`` or Keras' ``{"class_name", "config"}`` →
        ``{"name": canonical, params}`` (defaults are filled by the model)."""
        if isinstance(value, str):
            name, preset = self.lookup(value)
            return {"name": name, **preset}
        if isinstance(value, Mapping) and "class_name" in value:
            try:
                class_name, config = keras_import.keras_object(value)
            except InvalidSpec as exc:
                raise PydanticCustomError("keras_object", exc.message) from None
            name, preset = self.lookup(class_name)
            return {"name": name, **preset, **keras_config(class_name, config)}
        if isinstance(value, Mapping) and "name" in value:
            name, preset = self.lookup(value["name"])
            return {**preset, **value, "name": name}
        raise PydanticCustomError(
            "name_type",
            "{kind} must be a name or an object with a 'name', one of: {expected}",
            {"kind": self.kind, "expected": self.expected},
        )


def _keras_config(
    kind: str,
    class_name: str,
    config: dict[str, Any],
    ignored: frozenset[str],
    neutral: Mapping[str, tuple[Any, ...]],
) -> dict[str, Any]:
    """A Keras object's config → fitq parameters: Keras-only keys dropped when neutral."""
    params: dict[str, Any] = {}
    for key, value in config.items():
        if key in ignored:
            continue
        if key in neutral:
            if not _neutral(value, neutral[key]):
                raise PydanticCustomError(
                    "unsupported",
                    "{kind} {cls}: {key}={value} is not supported by fitq",
                    {"kind": kind, "cls": class_name, "key": key, "value": json.dumps(value)},
                )
            continue
        params[key] = value
    return params


def _dispatch(
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


_AS_ITSELF = PlainSerializer(_dump)


# ---------------------------------------------------------------- activations

ActivationName = Literal[
    "linear", "relu", "sigmoid", "tanh", "softmax", "leaky_relu", "elu", "selu", "gelu",
    "softplus", "softsign", "silu", "hard_sigmoid",
]  # fmt: skip
ACTIVATIONS: tuple[str, ...] = get_args(ActivationName)
_ACTIVATIONS = _Names("activation", ACTIVATIONS, aliases={"swish": "silu"})
_ACTIVATIONS.expected += ", swish"


def _activation(value: Any) -> str:
    return _ACTIVATIONS.lookup(keras_import.activation_name(value))[0]


Activation = Annotated[ActivationName, BeforeValidator(_activation)]

# ---------------------------------------------------------------- initializers

InitializerName = Literal[
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
    "lecun_normal", "zeros", "ones",
]  # fmt: skip


class NamedInitializer(_Strict):
    name: InitializerName


class ConstantInitializer(_Strict):
    name: Literal["constant"]
    value: float = 0.0


class RandomNormalInitializer(_Strict):
    name: Literal["random_normal"]
    mean: float = 0.0
    stddev: float = Field(default=0.05, ge=0)


class TruncatedNormalInitializer(_Strict):
    name: Literal["truncated_normal"]
    mean: float = 0.0
    stddev: float = Field(default=0.05, ge=0)


class RandomUniformInitializer(_Strict):
    name: Literal["random_uniform"]
    minval: float = -0.05
    maxval: float = 0.05

    @model_validator(mode="after")
    def _ordered(self) -> RandomUniformInitializer:
        if self.minval > self.maxval:
            _fail(("maxval",), "range", f"must be ≥ minval ({self.minval}), got {self.maxval}")
        return self


_INITIALIZER_CLASSES: dict[str, type[BaseModel]] = {
    **{n: NamedInitializer for n in get_args(InitializerName)},
    "constant": ConstantInitializer,
    "random_normal": RandomNormalInitializer,
    "truncated_normal": TruncatedNormalInitializer,
    "random_uniform": RandomUniformInitializer,
}
_INITIALIZERS = _Names(
    "initializer",
    list(_INITIALIZER_CLASSES),
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
    return _keras_config(
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
            _, config = keras_import.keras_object(value)
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
        _dispatch(_initializer_dict, _INITIALIZER_CLASSES, "name"),
        json_schema_input_type=str
        | NamedInitializer
        | ConstantInitializer
        | RandomNormalInitializer
        | TruncatedNormalInitializer
        | RandomUniformInitializer,
    ),
    _AS_ITSELF,
]

# ---------------------------------------------------------------- regularizers


class Regularizer(_Strict):
    """Keras' L1L2: ``l1·Σ|w| + l2·Σw²`` added to the loss (no ½ on the L2 term)."""

    l1: float = Field(default=0.0, ge=0)
    l2: float = Field(default=0.0, ge=0)


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
            class_name, config = keras_import.keras_object(value)
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


# ---------------------------------------------------------------- optimizers

_LR = Annotated[float, Field(gt=0)]
_EPS = Annotated[float, Field(gt=0)]
_DECAY = Annotated[float, Field(ge=0)]
_BETA = Annotated[float, Field(ge=0, lt=1)]
_MOMENTUM = Annotated[float, Field(ge=0, le=1)]


class SGD(_Strict):
    """torch.optim.SGD (dampening 0); Keras' momentum/nesterov names."""

    name: Literal["sgd"]
    learning_rate: _LR = 0.01
    momentum: _MOMENTUM = 0.0
    nesterov: bool = False
    weight_decay: _DECAY = 0.0

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGD:
        if self.nesterov and self.momentum == 0:
            _fail(("nesterov",), "nesterov", "nesterov needs momentum > 0 (got momentum 0.0)")
        return self


class Adagrad(_Strict):
    """torch.optim.Adagrad; Keras' initial_accumulator_value, epsilon → eps."""

    name: Literal["adagrad"]
    learning_rate: _LR = 0.001
    initial_accumulator_value: float = Field(default=0.1, ge=0)
    epsilon: _EPS = 1e-7
    weight_decay: _DECAY = 0.0


class RMSprop(_Strict):
    """torch.optim.RMSprop; Keras' rho → alpha, epsilon → eps."""

    name: Literal["rmsprop"]
    learning_rate: _LR = 0.001
    rho: _BETA = 0.9
    momentum: _MOMENTUM = 0.0
    epsilon: _EPS = 1e-7
    centered: bool = False
    weight_decay: _DECAY = 0.0


class Adam(_Strict):
    """torch.optim.Adam; Keras' beta_1/beta_2 → betas, epsilon → eps."""

    name: Literal["adam"]
    learning_rate: _LR = 0.001
    beta_1: _BETA = 0.9
    beta_2: _BETA = 0.999
    epsilon: _EPS = 1e-7
    amsgrad: bool = False
    weight_decay: _DECAY = 0.0


class AdamW(Adam):
    """torch.optim.AdamW (decoupled weight decay); Keras 3's default weight_decay."""

    name: Literal["adamw"]  # type: ignore[assignment]
    weight_decay: _DECAY = 0.004


_OPTIMIZER_CLASSES: dict[str, type[BaseModel]] = {
    "sgd": SGD,
    "adagrad": Adagrad,
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
}
_OPTIMIZERS = _Names(
    "optimizer",
    list(_OPTIMIZER_CLASSES),
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
    return _keras_config(
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
    return _OPTIMIZERS.object(value, _keras_optimizer)


Optimizer = Annotated[
    SGD | Adagrad | RMSprop | Adam | AdamW,
    PlainValidator(
        _dispatch(_optimizer_dict, _OPTIMIZER_CLASSES, "name"),
        json_schema_input_type=str | SGD | Adagrad | RMSprop | Adam | AdamW,
    ),
    _AS_ITSELF,
]

# ---------------------------------------------------------------- losses

CrossEntropyName = Literal[
    "sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy"
]
CROSS_ENTROPIES: tuple[str, ...] = get_args(CrossEntropyName)
REGRESSION_LOSSES = ("mean_squared_error", "mean_absolute_error", "huber")


class CrossEntropyLoss(_Strict):
    name: CrossEntropyName
    from_logits: bool = False


class RegressionLoss(_Strict):
    name: Literal["mean_squared_error", "mean_absolute_error"]


class HuberLoss(_Strict):
    name: Literal["huber"]
    delta: float = Field(default=1.0, gt=0)


_LOSS_CLASSES: dict[str, type[BaseModel]] = {
    **{n: CrossEntropyLoss for n in CROSS_ENTROPIES},
    "mean_squared_error": RegressionLoss,
    "mean_absolute_error": RegressionLoss,
    "huber": HuberLoss,
}
_LOSSES = _Names(
    "loss",
    list(_LOSS_CLASSES),
    aliases={"mse": "mean_squared_error", "mae": "mean_absolute_error", "huber_loss": "huber"},
)
_LOSSES.expected += ", mse, mae"


def _keras_loss(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    return _keras_config(
        "loss",
        class_name,
        config,
        ignored=frozenset({"name", "dtype", "fn"}),
        neutral={
            "reduction": ("auto", "sum_over_batch_size", None),
            "label_smoothing": (0.0, 0),
            "axis": (-1,),
            "ignore_class": (None,),
        },
    )


def _loss_dict(value: Any) -> dict[str, Any]:
    return _LOSSES.object(value, _keras_loss)


Loss = Annotated[
    CrossEntropyLoss | RegressionLoss | HuberLoss,
    PlainValidator(
        _dispatch(_loss_dict, _LOSS_CLASSES, "name"),
        json_schema_input_type=str | CrossEntropyLoss | RegressionLoss | HuberLoss,
    ),
    _AS_ITSELF,
]

# ---------------------------------------------------------------- metrics

MetricName = Literal["accuracy", "mae", "mse"]
_METRICS = {"accuracy": "accuracy", "acc": "accuracy", "mae": "mae", "mse": "mse"}
_METRICS |= {"meanabsoluteerror": "mae", "meansquarederror": "mse"}
# Keras' explicit accuracies are accepted where they are what "accuracy" picks anyway.
_SPECIFIC_ACCURACIES = {
    "sparsecategoricalaccuracy": "sparse_categorical_crossentropy",
    "categoricalaccuracy": "categorical_crossentropy",
    "binaryaccuracy": "binary_crossentropy",
}


def _metric_name(value: Any, loss: str | None, index: int) -> str:
    if isinstance(value, Mapping) and isinstance(value.get("class_name"), str):
        config = value.get("config")
        config = config if isinstance(config, Mapping) else {}
        if config.get("threshold", 0.5) != 0.5:
            _fail((index,), "unsupported", "fitq's binary accuracy uses threshold 0.5", value)
        fn = config.get("fn")
        value = fn if isinstance(fn, str) else value["class_name"]
    if not isinstance(value, str):
        _fail((index,), "name_type", "a metric must be a name: accuracy, mae or mse", value)
    key = name_key(value)
    if key in _SPECIFIC_ACCURACIES:
        if loss is not None and _SPECIFIC_ACCURACIES[key] != loss:
            _fail(
                (index,),
                "metric_loss",
                f"{value} does not fit the loss {loss}; use 'accuracy', which picks the "
                "right kind from the loss",
                value,
            )
        return "accuracy"
    if key not in _METRICS:
        _fail(
            (index,),
            "unknown_name",
            f"unknown metric {value!r}; expected one of: accuracy (acc), mae "
            "(mean_absolute_error), mse (mean_squared_error)",
            value,
        )
    metric = _METRICS[key]
    if metric == "accuracy" and loss in REGRESSION_LOSSES:
        _fail(
            (index,),
            "metric_loss",
            f"accuracy needs a classification loss (a cross-entropy), not {loss}; "
            "for regression use mae or mse",
            value,
        )
    if metric in ("mae", "mse") and loss == "sparse_categorical_crossentropy":
        _fail(
            (index,),
            "metric_loss",
            f"{metric} compares outputs with targets, but sparse_categorical_crossentropy's "
            "targets are class indices and its outputs one probability per class",
            value,
        )
    return metric


# ---------------------------------------------------------------- layers


class Dense(_Strict):
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


class Dropout(_Strict):
    type: Literal["dropout"]
    rate: float = Field(ge=0, lt=1)


class ActivationLayer(_Strict):
    type: Literal["activation"]
    activation: Activation


class BatchNormalization(_Strict):
    """Keras' convention: ``moving = momentum·moving + (1 − momentum)·batch``."""

    type: Literal["batch_normalization"]
    momentum: float = Field(default=0.99, ge=0, le=1)
    epsilon: float = Field(default=0.001, gt=0)
    center: bool = True
    scale: bool = True


class LayerNormalization(_Strict):
    type: Literal["layer_normalization"]
    epsilon: float = Field(default=0.001, gt=0)
    center: bool = True
    scale: bool = True


_LAYER_CLASSES: dict[str, type[BaseModel]] = {
    "dense": Dense,
    "dropout": Dropout,
    "activation": ActivationLayer,
    "batch_normalization": BatchNormalization,
    "layer_normalization": LayerNormalization,
}
_LAYER_TYPES = _Names("layer type", list(_LAYER_CLASSES))


def _layer_dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        _fail(
            (), "layer_type", f"a layer must be an object with a 'type' ({_LAYER_TYPES.expected})"
        )
    if "type" not in value:
        _fail(("type",), "layer_type", f"a layer needs a 'type', one of: {_LAYER_TYPES.expected}")
    try:
        layer_type = _LAYER_TYPES.lookup(value["type"])[0]
    except PydanticCustomError as exc:
        _fail(("type",), exc.type, exc.message(), value["type"])
    return {**value, "type": layer_type}


Layer = Annotated[
    Dense | Dropout | ActivationLayer | BatchNormalization | LayerNormalization,
    PlainValidator(
        _dispatch(_layer_dict, _LAYER_CLASSES, "type"),
        json_schema_input_type=Dense
        | Dropout
        | ActivationLayer
        | BatchNormalization
        | LayerNormalization,
    ),
    _AS_ITSELF,
]


class ModelSpec(_Strict):
    """A stack of layers on ``input_dim`` features; ``layers[i]`` is ``layers.{i}``."""

    input_dim: int = Field(ge=1)
    layers: list[Layer] = Field(min_length=1)

    @model_validator(mode="after")
    def _shape(self, info: ValidationInfo) -> ModelSpec:
        limits = _limits(info)
        if len(self.layers) > limits.max_layers:
            _fail(
                ("layers",),
                "too_many",
                f"at most {limits.max_layers} layers (got {len(self.layers)})",
            )
        if not any(isinstance(layer, Dense) for layer in self.layers):
            _fail(("layers",), "no_dense", "the model needs at least one dense layer (its outputs)")
        if self.parameter_count() > limits.max_parameters:
            _fail(
                ("layers",),
                "too_large",
                f"the model has {self.parameter_count():,} parameters; the limit is "
                f"{limits.max_parameters:,} (FITQ_MAX_PARAMETERS)",
            )
        return self

    @property
    def output_index(self) -> int:
        """Index of the last dense layer: it decides the number of outputs."""
        return max(i for i, layer in enumerate(self.layers) if isinstance(layer, Dense))

    @property
    def output_units(self) -> int:
        layer = self.layers[self.output_index]
        assert isinstance(layer, Dense)
        return layer.units

    def output_activation(self) -> tuple[int, str]:
        """(index of the layer that sets it, the activation applied to the outputs)."""
        index = self.output_index
        layer = self.layers[index]
        assert isinstance(layer, Dense)
        activation: str = layer.activation
        for i, later in enumerate(self.layers[index + 1 :], start=index + 1):
            if isinstance(later, ActivationLayer) and later.activation != "linear":
                index, activation = i, later.activation
        return index, activation

    def parameter_count(self) -> int:
        """Weights, biases and normalization scales/offsets (moving statistics excluded)."""
        width, count = self.input_dim, 0
        for layer in self.layers:
            if isinstance(layer, Dense):
                count += width * layer.units + (layer.units if layer.use_bias else 0)
                width = layer.units
            elif isinstance(layer, BatchNormalization | LayerNormalization):
                count += width * (int(layer.center) + int(layer.scale))
        return count


# ---------------------------------------------------------------- compile and fit

# Keys of Keras' compile_config that fitq accepts and drops: (neutral values) or None = any.
_KERAS_COMPILE_KEYS: dict[str, tuple[Any, ...] | None] = {
    "loss_weights": (None,),
    "weighted_metrics": (None,),
    "run_eagerly": None,
    "steps_per_execution": None,
    "jit_compile": None,
    "auto_scale_loss": None,
}


class CompileSpec(_Strict):
    """Keras' ``model.compile()``: optimizer (default rmsprop, as Keras), loss, metrics.

    Also accepts Keras' ``compile_config`` keys; the ones with no fitq meaning are
    dropped when neutral (``loss_weights: null``) or harmless (``jit_compile``).
    """

    optimizer: Optimizer = Field(default_factory=lambda: RMSprop(name="rmsprop"))
    loss: Loss
    metrics: list[MetricName] = Field(default_factory=list)

    @classmethod
    def _prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        for key, allowed in _KERAS_COMPILE_KEYS.items():
            if key not in data:
                continue
            value = data.pop(key)
            if allowed is not None and not _neutral(value, allowed):
                _fail((key,), "unsupported", f"{key} is not supported by fitq (got {value!r})")
        return data

    @field_validator("metrics", mode="before")
    @classmethod
    def _metric_names(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            return value
        loss = info.data.get("loss")
        loss_name = getattr(loss, "name", None)
        names: list[str] = []
        for index, item in enumerate(value):
            name = _metric_name(item, loss_name, index)
            if name not in names:
                names.append(name)
        return names


def _monitor(value: Any) -> Any:
    """Keras' spellings of a History key: ``val_acc`` → ``val_accuracy``."""
    if not isinstance(value, str):
        return value
    prefix, base = ("val_", value[4:]) if value.startswith("val_") else ("", value)
    canonical = "loss" if base == "loss" else _METRICS.get(name_key(base))
    return prefix + canonical if canonical else value


class EarlyStopping(_Strict):
    """Keras' EarlyStopping callback (``min_delta`` is taken as its absolute value, as Keras)."""

    monitor: Annotated[str, BeforeValidator(_monitor)] = "val_loss"
    min_delta: Annotated[
        float, BeforeValidator(lambda v: abs(v) if type(v) in (int, float) else v)
    ] = 0.0
    patience: int = Field(default=0, ge=0)
    mode: Literal["auto", "min", "max"] = "auto"
    restore_best_weights: bool = False


class FitSpec(_Strict):
    """Keras' ``model.fit()``; ``batch_size: null`` is the whole training set in one batch."""

    epochs: int = Field(default=1, ge=1)
    batch_size: int | None = Field(default=32, ge=1)
    validation_split: float = Field(default=0.0, ge=0, lt=1)
    shuffle: bool = True
    early_stopping: EarlyStopping | None = None
    normalize: bool = False

    @field_validator("epochs")
    @classmethod
    def _epochs_limit(cls, value: int, info: ValidationInfo) -> int:
        limit = _limits(info).max_epochs
        if value > limit:
            raise PydanticCustomError(
                "too_large",
                "must be ≤ {limit}, the service's limit FITQ_MAX_EPOCHS (got {value})",
                {"limit": limit, "value": value},
            )  # fmt: skip
        return value


# ---------------------------------------------------------------- the job


_ID = Annotated[str, Field(min_length=1, max_length=200)]


def _add_alternatives(schema: dict[str, Any]) -> None:
    schema.setdefault("properties", {}).update(
        {
            "keras_json": {
                "title": "Keras Json",
                "description": "Keras' model.to_json() (a string, or its parsed object) "
                "instead of 'model'",
                "anyOf": [{"type": "string"}, {"type": "object"}],
            },
            "compile_config": {
                "title": "Compile Config",
                "description": "Keras' model.get_compile_config() instead of 'compile'",
                "type": "object",
            },
        }
    )


class JobSpec(_Strict):
    """What ``POST /v1/jobs`` receives. ``model_dump(mode="json")`` is the contract.

    ``model`` or ``keras_json`` (converted to ``model``, then dropped: the dump
    holds the fitq model only). ``compile``, or Keras' ``compile_config``, or
    — when neither is given — the ``compile_config`` inside ``keras_json``.
    """

    model_config = ConfigDict(json_schema_extra=_add_alternatives)

    # Never None once validated: ``_whole`` refuses a spec without them (the None default
    # keeps them optional in the JSON schema, where keras_json/compile_config stand in).
    model: ModelSpec = Field(default=None, validation_alias=AliasChoices("model", "keras_json"))  # type: ignore[assignment]
    compile: CompileSpec = Field(
        default=None, validation_alias=AliasChoices("compile", "compile_config")
    )  # type: ignore[assignment]
    fit: FitSpec = Field(default_factory=FitSpec)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    priority: int = Field(default=0, ge=-100, le=100)
    max_attempts: int = Field(default=3, ge=1, le=10)
    dataset_id: _ID
    validation_dataset_id: _ID | None = None
    test_dataset_id: _ID | None = None

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    def field_loc(self, field: str) -> str:
        """The key the user sent for ``field``: ``"keras_json"`` for a Keras model."""
        return self._sources.get(field, field)

    @field_validator("model", mode="before")
    @classmethod
    def _from_keras(cls, value: Any) -> Any:
        keras = isinstance(value, str | bytes | bytearray) or (
            isinstance(value, Mapping) and "class_name" in value
        )
        if not keras:
            return value
        try:
            return keras_import.model_from_keras(value)
        except InvalidSpec as exc:
            _fail(exc.loc or (), "keras_import", exc.message)
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            # A safety net: an export shaped unlike any Keras' is the client's error, not a 500.
            _fail((), "keras_import", f"keras_json is not a Keras model export we can read ({exc})")

    @model_validator(mode="wrap")
    @classmethod
    def _whole(cls, data: Any, handler: Callable[[Any], JobSpec]) -> JobSpec:
        if not isinstance(data, Mapping):
            return handler(data)
        data = _resolve_alternatives(dict(data))
        spec = handler(data)
        spec._sources = {
            "model": "keras_json" if "keras_json" in data else "model",
            "compile": "compile_config" if "compile_config" in data else "compile",
        }
        spec._check_output()
        spec._check_fit()
        return spec

    def _check_output(self) -> None:
        """The output layer against the loss — what no dataset can make right."""
        loss, model = self.compile.loss.name, self.model
        index, units = model.output_index, model.output_units
        units_loc = (self.field_loc("model"), "layers", index, "units")
        if loss in ("sparse_categorical_crossentropy", "categorical_crossentropy") and units < 2:
            _fail(
                units_loc,
                "output_units",
                f"{loss} needs one output unit per class (at least 2); the last dense layer "
                f"(layers.{index}) has 1. For two classes use 2 units with softmax, or "
                "binary_crossentropy with 1 unit and sigmoid",
                units,
            )
        if loss == "binary_crossentropy" and units != 1:
            _fail(
                units_loc,
                "output_units",
                f"binary_crossentropy takes 1 output unit (the probability of label 1; labels "
                f"are 0/1, one label column); the last dense layer (layers.{index}) has {units}. "
                f"For {units} classes use sparse_categorical_crossentropy with softmax",
                units,
            )
        where, activation = model.output_activation()
        if activation == "softmax" and units == 1:
            _fail(
                (self.field_loc("model"), "layers", where, "activation"),
                "output_activation",
                "softmax over 1 unit always outputs 1.0, so nothing can be learned; use "
                "sigmoid (with binary_crossentropy) or 2 units",
                activation,
            )

    def _check_fit(self) -> None:
        fit = self.fit
        has_validation = fit.validation_split > 0 or self.validation_dataset_id is not None
        if fit.validation_split > 0 and self.validation_dataset_id is not None:
            _fail(
                ("fit", "validation_split"),
                "validation_twice",
                "give validation_split or validation_dataset_id, not both (Keras would "
                "silently ignore validation_split)",
                fit.validation_split,
            )
        if fit.early_stopping is None:
            return
        logged = ["loss", *self.compile.metrics]
        available = logged + [f"val_{k}" for k in logged] if has_validation else logged
        monitor = fit.early_stopping.monitor
        if monitor not in available:
            hint = (
                "it needs validation data: set fit.validation_split > 0 or validation_dataset_id"
                if monitor.startswith("val_") and monitor[4:] in logged
                else f"expected one of: {', '.join(available)}"
            )
            _fail(
                ("fit", "early_stopping", "monitor"),
                "monitor",
                f"early stopping monitors {monitor!r}, which is not logged; {hint}",
                monitor,
            )


def _resolve_alternatives(data: dict[str, Any]) -> dict[str, Any]:
    """model/keras_json and compile/compile_config: exactly one each; the ``gd`` alias."""
    if "model" in data and "keras_json" in data:
        _fail(("keras_json",), "model_twice", "give either model or keras_json, not both")
    if data.get("model", data.get("keras_json")) is None:
        _fail(
            ("model",),
            "model_required",
            "a model is required: 'model' (fitq's layers) or 'keras_json' (Keras' model.to_json())",
        )
    if "compile" in data and "compile_config" in data:
        _fail(
            ("compile_config",), "compile_twice", "give either compile or compile_config, not both"
        )
    if "compile" not in data and "compile_config" not in data and "keras_json" in data:
        try:
            embedded = keras_import.compile_config(data["keras_json"])
        except InvalidSpec:
            embedded = None  # the model field reports it
        if embedded is not None:
            data["compile_config"] = embedded
    compile_ = data.get("compile", data.get("compile_config"))
    if compile_ is None:
        _fail(
            ("compile",),
            "compile_required",
            "compile is required: at least a loss, as Keras' model.compile(loss=…)",
        )
    optimizer = compile_.get("optimizer") if isinstance(compile_, Mapping) else None
    if isinstance(optimizer, Mapping):
        optimizer = optimizer.get("name", optimizer.get("class_name"))
    if isinstance(optimizer, str) and name_key(optimizer) == "gd":
        fit = data.get("fit", {})
        if isinstance(fit, Mapping):
            if fit.get("batch_size") is not None:
                _fail(
                    ("fit", "batch_size"),
                    "gd_batch_size",
                    f"optimizer 'gd' is gradient descent on the whole dataset, so it takes no "
                    f"batch_size (got {fit['batch_size']}); remove it, or use 'sgd'",
                    fit["batch_size"],
                )
            data["fit"] = {**fit, "batch_size": None}
    return data


# ---------------------------------------------------------------- parsing and errors


def parse_spec(
    data: Mapping[str, Any] | str | bytes | bytearray, *, limits: SpecLimits | None = None
) -> JobSpec:
    """A request body → ``JobSpec``, or one ``InvalidSpec`` naming the field.

    The ``loc`` is the first error's, under ``"body"``; the message holds them all.
    """
    if isinstance(data, str | bytes | bytearray):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise InvalidSpec(
                f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                loc=["body"],
            ) from None
        except UnicodeDecodeError:
            raise InvalidSpec("the body is not UTF-8 text", loc=["body"]) from None
        except RecursionError:
            raise InvalidSpec("the body is nested too deeply", loc=["body"]) from None
    if not isinstance(data, Mapping):
        raise InvalidSpec(
            f"the body must be a JSON object (a job spec), got {_type_name(data)}", loc=["body"]
        )
    try:
        return JobSpec.model_validate(data, context={"limits": limits or DEFAULT_LIMITS})
    except ValidationError as exc:
        errors = exc.errors()
        messages = [format_error(e) for e in errors]
        message = messages[0]
        if len(messages) > 1:
            more = "; ".join(messages[1:4]) + ("; …" if len(messages) > 4 else "")
            message += f" (and {len(messages) - 1} more: {more})"
        raise InvalidSpec(message, loc=["body", *errors[0]["loc"]]) from None


def validation_errors(
    exc: ValidationError, prefix: Sequence[str | int] = ("body",)
) -> list[dict[str, Any]]:
    """A ``ValidationError`` as FastAPI's ``detail`` list, with parse_spec's messages."""
    return [
        {"loc": [*prefix, *e["loc"]], "msg": _message(e), "type": e["type"]} for e in exc.errors()
    ]


def format_error(error: ErrorDetails) -> str:
    """``"model.layers.1.units: must be ≥ 1 (got 0)"``."""
    loc = ".".join(str(part) for part in error["loc"])
    return f"{loc}: {_message(error)}" if loc else _message(error)


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = {k: _number(v) for k, v in (error.get("ctx") or {}).items()}
    got = f" (got {_short(error.get('input'))})"
    templates = {
        "greater_than_equal": f"must be ≥ {ctx.get('ge')}{got}",
        "greater_than": f"must be > {ctx.get('gt')}{got}",
        "less_than": f"must be < {ctx.get('lt')}{got}",
        "less_than_equal": f"must be ≤ {ctx.get('le')}{got}",
        "missing": "is required",
        "int_type": f"must be an integer{got}",
        "float_type": f"must be a number{got}",
        "finite_number": f"must be a finite number{got}",
        "bool_type": f"must be true or false{got}",
        "string_type": f"must be a string{got}",
        "string_too_short": "must not be empty",
        "string_too_long": f"must be at most {ctx.get('max_length')} characters",
        "too_short": f"must have at least {ctx.get('min_length')} item(s)",
        "list_type": f"must be a list{got}",
        "model_type": f"must be an object{got}",
        "dict_type": f"must be an object{got}",
        "literal_error": f"must be one of: {ctx.get('expected')}{got}",
    }
    return templates.get(kind, error["msg"])


def _number(value: Any) -> Any:
    """``0.0`` → ``0`` in messages ("must be > 0")."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _type_name(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
