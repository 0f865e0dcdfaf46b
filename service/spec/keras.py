"""Keras ``model.to_json()`` → a fitq model dict (the input of ``ModelSpec``).

The export is read as data only — ``json.loads`` and dict lookups; keras and
tensorflow are never imported and nothing is evaluated. Both formats are
accepted: Keras 3 (``module``/``registered_name`` on every object, an
``InputLayer`` with ``batch_shape``) and tf.keras 2 (``batch_input_shape``,
dtype strings, ``keras_version`` "2.x").

One fitq layer per Keras layer, in order, the ``InputLayer`` excluded: the
i-th entry of Keras' ``model.layers`` is fitq's ``layers.{i}`` — in error
messages and in the trained model's weight names alike. A multi-dimensional input
(``Input(shape=(28, 28))``) becomes the model's ``input_shape``; its rows are stored
flat, so ``Flatten`` (and a ``Reshape`` to one axis) is the identity on them.

What is converted is a dict shaped like ``ModelSpec``'s input; names and
values are validated there (an unknown activation inside a Keras export is
reported at ``keras_json.layers.{i}.activation``). This module refuses only
what has no fitq equivalent, naming the layer and its index.

Unknown options in a layer's config are ignored when null or false (new Keras
versions keep adding such switches, e.g. ``quantization_config: null``) and
refused otherwise, so nothing that changes the model is dropped silently.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any

from fitq.service.errors import InvalidSpec
from fitq.service.spec.base import name_key

SUPPORTED_LAYERS = (
    "Dense",
    "Dropout",
    "Activation",
    "BatchNormalization",
    "LayerNormalization",
    "ReLU",
    "Softmax",
    "LeakyReLU",
    "ELU",
    "PReLU",
    "ThresholdedReLU",
    "Identity",
    "Flatten",
    "Reshape",
    "Rescaling",
    "Normalization",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
)
_SUPPORTED_TEXT = ", ".join(SUPPORTED_LAYERS) + " (after an optional InputLayer)"

# Config keys that never change what a layer computes.
_IGNORED = frozenset(
    {"name", "dtype", "batch_input_shape", "batch_shape", "input_shape", "input_dim", "autocast"}
)


def f32_shortest(value: Any) -> Any:
    """A float that is exactly a float32 → the shortest decimal with the same float32.

    Keras keeps hyperparameters such as ``learning_rate`` in float32 variables,
    so a ``get_config()`` says ``0.0010000000474974513`` for ``0.001``. Values that
    are not exactly a float32 (``0.9``, typed by a person) are returned unchanged.
    """
    if not isinstance(value, float) or not math.isfinite(value) or value == 0.0:
        return value
    try:
        as_f32 = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return value
    if as_f32 != value:
        return value
    for digits in range(1, 10):
        shorter = float(f"{value:.{digits}g}")
        if struct.unpack("f", struct.pack("f", shorter))[0] == value:
            return shorter
    return value


def keras_object(value: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A Keras serialized object ``{"class_name", "config", …}`` → (class_name, config).

    ``module`` and ``registered_name`` are dropped; float32 artefacts in the
    config are shortened (see ``f32_shortest``).
    """
    class_name = value.get("class_name")
    if not isinstance(class_name, str):
        raise InvalidSpec("a Keras object needs a string 'class_name'")
    config = _config(value.get("config"), f"the config of Keras object {class_name!r}")
    return class_name, {k: f32_shortest(v) for k, v in config.items()}


def loads(source: str | bytes | bytearray | Mapping[str, Any]) -> dict[str, Any]:
    """The Keras JSON text (or its already-parsed object) as a dict."""
    if isinstance(source, Mapping):
        return dict(source)
    if not isinstance(source, str | bytes | bytearray):
        raise InvalidSpec(
            f"keras_json must be a string (Keras' model.to_json()), got {_json_type(source)}"
        )
    try:
        text = source.decode("utf-8") if isinstance(source, bytes | bytearray) else source
        doc = json.loads(text)
    except UnicodeDecodeError as exc:
        raise InvalidSpec(f"keras_json is not UTF-8 text: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise InvalidSpec(
            f"keras_json is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidSpec("keras_json is nested too deeply") from None
    if not isinstance(doc, dict):
        raise InvalidSpec(
            f"keras_json must be a JSON object (Keras' model.to_json()), got {_json_type(doc)}"
        )
    return doc


def compile_config(source: str | bytes | bytearray | Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``compile_config`` a Keras 3 export carries (a compiled model), else None."""
    config = loads(source).get("compile_config")
    return dict(config) if isinstance(config, Mapping) else None


def model_from_keras(source: str | bytes | bytearray | Mapping[str, Any]) -> dict[str, Any]:
    """Keras ``model.to_json()`` → ``{"input_dim", "input_shape", "layers": [fitq layers]}``.

    Raises ``InvalidSpec`` whose ``loc`` is relative to the model
    (``["layers", i]`` for a layer, ``[]`` for the whole export).
    """
    doc = loads(source)
    class_name = doc.get("class_name")
    if class_name in ("Functional", "Model"):
        raise InvalidSpec(
            "only Sequential models are supported (this is a Functional model); "
            "rebuild it as keras.Sequential([keras.Input(shape=(n,)), Dense(...), ...])"
        )
    if class_name != "Sequential":
        got = f"class_name {class_name!r}" if class_name is not None else "no class_name"
        raise InvalidSpec(
            f"keras_json must be a Keras Sequential model's to_json() (class_name "
            f"'Sequential'), got {got}"
        )
    config = doc.get("config")
    layers = config.get("layers") if isinstance(config, Mapping) else config
    if not isinstance(layers, list):
        raise InvalidSpec("keras_json has no list of layers (config.layers)")
    if isinstance(config, Mapping) and config.get("trainable") is False:
        raise InvalidSpec("the model is frozen (trainable: false); fitq trains every layer")
    legacy = str(doc.get("keras_version", "")).startswith("2.")

    input_shape: list[int] | None = None
    shape: list[int] | None = None  # the current layer's input shape, while known
    out: list[dict[str, Any]] = []
    for position, layer in enumerate(layers):
        if not isinstance(layer, Mapping) or not isinstance(layer.get("class_name"), str):
            raise InvalidSpec(
                f"layer {len(out)} is not a Keras layer object", loc=["layers", len(out)]
            )
        if layer["class_name"] == "InputLayer":
            if position != 0:
                raise InvalidSpec(
                    f"an InputLayer may only come first (found at position {position})",
                    loc=["layers", len(out)],
                )
            input_shape = shape = _input_layer_shape(layer)
            continue
        index = len(out)
        if index == 0 and input_shape is None:
            input_shape = shape = _first_layer_shape(layer)
        converter = _Layer(layer, index, legacy, shape)
        out.append(converter.convert())
        shape = converter.shape

    if input_shape is None:
        input_shape = _model_shape(doc)
    if input_shape is None:
        raise InvalidSpec(
            "the Keras model has no input shape; build it with keras.Input(shape=(n_features,)) "
            "as its first layer (or input_shape=(n_features,) on the first layer)"
        )
    if not out:
        raise InvalidSpec("the Keras model has no layers after its InputLayer")
    return {"input_dim": math.prod(input_shape), "input_shape": input_shape, "layers": out}


# ---------------------------------------------------------------- input shape


def _input_shape(shape: Any, *, batched: bool, where: str) -> list[int]:
    """(None, 28, 28) with a batch axis, (28, 28) without → [28, 28]; sizes must be known."""
    dims = list(shape) if isinstance(shape, list | tuple) else None
    if dims is not None and batched and len(dims) >= 2:
        dims = dims[1:]
    if (
        dims is None
        or not dims
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims)
    ):
        raise InvalidSpec(
            f"{where}: input shape {_shape_text(shape)} is not a shape of known sizes; "
            "fitq models take rows of n features, input shape (None, n) (or (None, 28, 28) "
            "with a Flatten)"
        )
    if min(dims) < 1:
        raise InvalidSpec(f"{where}: input shape {_shape_text(shape)} has no features")
    return dims


def _config(value: Any, what: str) -> Mapping[str, Any]:
    """``value`` as a config object (null → empty); anything else is refused."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpec(f"{what} must be an object, got {_json_type(value)}")
    return value


def _input_layer_shape(layer: Mapping[str, Any]) -> list[int]:
    config = _config(layer.get("config"), "the InputLayer's config")
    for key in ("batch_shape", "batch_input_shape"):
        if config.get(key) is not None:
            return _input_shape(config[key], batched=True, where="the InputLayer")
    if config.get("shape") is not None:
        return _input_shape(config["shape"], batched=False, where="the InputLayer")
    raise InvalidSpec("the InputLayer has no shape (batch_shape or batch_input_shape)")


def _first_layer_shape(layer: Mapping[str, Any]) -> list[int] | None:
    where = f"layer 0 ({layer.get('class_name')})"
    config = _config(layer.get("config"), f"{where}: the config")
    for key in ("batch_input_shape", "batch_shape"):
        if config.get(key) is not None:
            return _input_shape(config[key], batched=True, where=where)
    if config.get("input_shape") is not None:
        return _input_shape(config["input_shape"], batched=False, where=where)
    if isinstance(config.get("input_dim"), int):
        return [int(config["input_dim"])]
    build = _config(layer.get("build_config"), f"{where}: build_config")
    if build.get("input_shape") is not None:
        return _input_shape(build["input_shape"], batched=True, where=where)
    return None


def _model_shape(doc: Mapping[str, Any]) -> list[int] | None:
    config = doc.get("config") if isinstance(doc.get("config"), Mapping) else {}
    assert isinstance(config, Mapping)
    build = _config(doc.get("build_config"), "the model's build_config")
    for shape in (config.get("build_input_shape"), build.get("input_shape")):
        if shape is not None:
            return _input_shape(shape, batched=True, where="the model")
    return None


def _shape_text(shape: Any) -> str:
    if isinstance(shape, list | tuple):
        inner = ", ".join("None" if d is None else str(d) for d in shape)
        return f"({inner},)" if len(shape) == 1 else f"({inner})"
    return repr(shape)


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


# ---------------------------------------------------------------- layers


class _Layer:
    """One Keras layer object and what fitq makes of it."""

    def __init__(self, layer: Mapping[str, Any], index: int, legacy: bool, shape: list[int] | None):
        self.class_name: str = layer["class_name"]
        self.index = index
        self.legacy = legacy
        self.shape = shape  # the input's shape (None: unknown); convert() sets the output's
        raw = _config(layer.get("config"), f"layer {index} ({self.class_name}): the config")
        self.config: dict[str, Any] = {k: f32_shortest(v) for k, v in raw.items()}
        self.label = f"layer {index} ({self.class_name} {self.config.get('name', '?')!r})"
        module = layer.get("module")
        self.custom = layer.get("registered_name") is not None and not str(module or "").startswith(
            "keras"
        )

    def fail(self, what: str) -> InvalidSpec:
        return InvalidSpec(f"{self.label}: {what}", loc=["layers", self.index])

    def convert(self) -> dict[str, Any]:
        # Only a supported class name picks a converter: any other string (the
        # client's) must never reach one of this object's other attributes.
        supported = self.class_name in SUPPORTED_LAYERS
        converter = getattr(self, f"_{self.class_name}", None) if supported else None
        if self.custom or converter is None:
            raise InvalidSpec(
                f"{self.label} is not supported; fitq supports: {_SUPPORTED_TEXT}",
                loc=["layers", self.index],
            )
        if self.config.get("trainable") is False:
            raise self.fail(
                "a frozen layer (trainable: false) is not supported; fitq trains every layer"
            )
        result: dict[str, Any] = converter()
        return result

    def take(
        self, used: tuple[str, ...], neutral: Mapping[str, tuple[Any, ...]] = {}
    ) -> dict[str, Any]:
        """The ``used`` keys; every other key must be ignorable or at a neutral value."""
        for key, value in self.config.items():
            if key in used or key in _IGNORED or key == "trainable":
                continue
            allowed = neutral.get(key)
            if allowed is not None:
                if not any(value == a and type(value) is type(a) for a in allowed):
                    shown = " or ".join(json.dumps(a) for a in allowed)
                    raise self.fail(
                        f"{key}={json.dumps(value)} is not supported (fitq needs {shown})"
                    )
            elif value is not None and value is not False:
                raise self.fail(f"option {key}={json.dumps(value)} is not supported by fitq")
        return {key: self.config[key] for key in used if key in self.config}

    def activation(self, value: Any) -> Any:
        name = activation_name(value)
        if self.legacy and isinstance(name, str) and name_key(name) == "hardsigmoid":
            raise self.fail(
                "tf.keras 2's hard_sigmoid (0.2·x + 0.5, clipped) differs from fitq's "
                "(Keras 3: relu6(x + 3) / 6); use another activation"
            )
        return name

    def _Dense(self) -> dict[str, Any]:
        none: tuple[Any, ...] = (None,)
        self.config.pop("lora_alpha", None)  # meaningless without lora_rank
        if self.config.get("activity_regularizer") is not None:
            raise self.fail(
                "activity_regularizer is not supported on a Dense; an ActivityRegularization"
                "(l1, l2) layer right after it adds the same penalty"
            )
        taken = self.take(
            ("units", "activation", "use_bias", "kernel_initializer", "bias_initializer",
             "kernel_regularizer", "kernel_constraint", "bias_constraint"),
            {"bias_regularizer": none, "activity_regularizer": none, "lora_rank": none,
             "quantization_config": none},
        )  # fmt: skip
        if "activation" in taken:
            taken["activation"] = self.activation(taken["activation"])
        units = taken.get("units")
        if self.shape is not None and isinstance(units, int):
            self.shape = [*self.shape[:-1], units]
        return {"type": "dense", **taken}

    def _Dropout(self) -> dict[str, Any]:
        # ``seed`` is dropped: the job's seed decides every random draw in fitq.
        self.config.pop("seed", None)
        return {"type": "dropout", **self.take(("rate",), {"noise_shape": (None,)})}

    def _Activation(self) -> dict[str, Any]:
        taken = self.take(("activation",))
        return {"type": "activation", "activation": self.activation(taken.get("activation"))}

    def _normalization(self, *, batch: bool) -> dict[str, Any]:
        axis = self.config.pop("axis", -1)
        if axis not in (-1, 1, [-1], [1]):
            raise self.fail(f"axis={json.dumps(axis)} is not supported (fitq normalizes axis -1)")
        none: tuple[Any, ...] = (None,)
        neutral: dict[str, tuple[Any, ...]] = {
            "beta_regularizer": none, "gamma_regularizer": none,
            "beta_constraint": none, "gamma_constraint": none,
        }  # fmt: skip
        for key, default in (("beta_initializer", "zeros"), ("gamma_initializer", "ones")) + (
            (("moving_mean_initializer", "zeros"), ("moving_variance_initializer", "ones"))
            if batch
            else ()
        ):
            value = self.config.pop(key, default)
            name = value if isinstance(value, str) else keras_object(value)[0]
            if name_key(name) != default:
                raise self.fail(f"{key} {name!r} is not supported (fitq uses {default})")
        if batch:
            neutral |= {"renorm": (False,), "renorm_clipping": none, "virtual_batch_size": none,
                        "adjustment": none, "synchronized": (False,)}  # fmt: skip
            for key in ("renorm_momentum", "fused"):
                self.config.pop(key, None)  # meaningless without renorm / a speed switch
            used: tuple[str, ...] = ("momentum", "epsilon", "center", "scale")
            return {"type": "batch_normalization", **self.take(used, neutral)}
        neutral["rms_scaling"] = (False,)
        return {"type": "layer_normalization", **self.take(("epsilon", "center", "scale"), neutral)}

    def _BatchNormalization(self) -> dict[str, Any]:
        return self._normalization(batch=True)

    def _LayerNormalization(self) -> dict[str, Any]:
        return self._normalization(batch=False)

    def _ReLU(self) -> dict[str, Any]:
        return {"type": "relu", **self.take(("max_value", "negative_slope", "threshold"))}

    def _Softmax(self) -> dict[str, Any]:
        self.take((), {"axis": (-1, [-1], *((1, [1]) if self._flat() else ()))})
        return {"type": "activation", "activation": "softmax"}

    def _LeakyReLU(self) -> dict[str, Any]:
        # tf.keras 2 calls the slope alpha; Keras 3 negative_slope (its default: 0.3)
        return {"type": "leaky_relu", **self.take(("negative_slope", "alpha"))}

    def _ELU(self) -> dict[str, Any]:
        return {"type": "elu", **self.take(("alpha",))}

    def _ThresholdedReLU(self) -> dict[str, Any]:
        # tf.keras 2's x·[x > theta] is Keras 3's ReLU with that threshold (theta ≥ 0 both)
        theta = self.take(("theta",)).get("theta", 1.0)
        return {"type": "relu", "max_value": None, "negative_slope": 0.0, "threshold": theta}

    def _Identity(self) -> dict[str, Any]:
        self.take(())
        return {"type": "activation", "activation": "linear"}

    def _PReLU(self) -> dict[str, Any]:
        none: tuple[Any, ...] = (None,)
        neutral = {"alpha_regularizer": none, "alpha_constraint": none, "shared_axes": none}
        return {"type": "prelu", **self.take(("alpha_initializer",), neutral)}

    def _Flatten(self) -> dict[str, Any]:
        # Rows are stored flat, so Flatten is the identity; it stays a layer so that the
        # indices of the layers after it do not move. channels_first would first move the
        # channel axis last, which a flat row cannot express.
        formats = ("channels_last",) if not self._flat() else ("channels_last", "channels_first")
        self.take((), {"data_format": formats})
        self.shape = [math.prod(self.shape)] if self.shape is not None else None
        return {"type": "flatten"}

    def _Reshape(self) -> dict[str, Any]:
        target = self.config.get("target_shape")
        size = math.prod(self.shape) if self.shape is not None else None
        if not (
            isinstance(target, list | tuple)
            and len(target) == 1
            and (target[0] == -1 or (size is not None and target[0] == size))
        ):
            raise self.fail(
                f"target_shape={json.dumps(target)} is not supported: fitq's layers take flat "
                f"rows, so only a Reshape to one axis ((n,) with n the number of values"
                f"{f', {size}' if size is not None else ''}, or (-1,)) is taken"
            )
        self.take(("target_shape",))
        self.shape = [size] if size is not None else None
        return {"type": "flatten"}

    def _Rescaling(self) -> dict[str, Any]:
        for key in ("scale", "offset"):
            value = self.config.get(key)
            if value is not None and not isinstance(value, int | float):
                raise self.fail(
                    f"{key}={json.dumps(value)[:60]} is not supported: fitq's Rescaling takes "
                    "one number for every value (not one per channel)"
                )
        return {"type": "rescaling", **self.take(("scale", "offset"))}

    def _Normalization(self) -> dict[str, Any]:
        if self.config.get("mean") is None or self.config.get("variance") is None:
            raise self.fail(
                "a Normalization without mean and variance gets its statistics from adapt(), "
                "which the model's JSON does not carry; pass Normalization(mean=…, "
                "variance=…), or drop the layer and use fit.normalize"
            )
        axes: tuple[Any, ...] = (-1, [-1], *((1, [1]) if self._flat() else ()))
        taken = self.take(("mean", "variance", "invert"), {"axis": axes})
        return {"type": "normalization", **taken}

    def _GaussianNoise(self) -> dict[str, Any]:
        self.config.pop("seed", None)  # the job's seed decides every draw
        return {"type": "gaussian_noise", **self.take(("stddev",))}

    def _GaussianDropout(self) -> dict[str, Any]:
        self.config.pop("seed", None)
        return {"type": "gaussian_dropout", **self.take(("rate",))}

    def _AlphaDropout(self) -> dict[str, Any]:
        self.config.pop("seed", None)
        return {"type": "alpha_dropout", **self.take(("rate",), {"noise_shape": (None,)})}

    def _ActivityRegularization(self) -> dict[str, Any]:
        return {"type": "activity_regularization", **self.take(("l1", "l2"))}

    def _flat(self) -> bool:
        """The layer's input is rows of one axis (as far as the export says)."""
        return self.shape is None or len(self.shape) == 1


def activation_name(value: Any) -> Any:
    """A Keras activation as serialized (a name, null, or an object) → a name.

    Names are not checked here; the spec validates them. Anything that is not a
    recognisable activation is returned as is for the spec to refuse.
    """
    if value is None:
        return "linear"
    if isinstance(value, Mapping) and isinstance(value.get("class_name"), str):
        config = value.get("config")
        if isinstance(config, str):  # {"class_name": "function", "config": "relu"}
            return config
        if isinstance(config, Mapping) and isinstance(config.get("name"), str):
            return config["name"]
        return value["class_name"]
    return value
