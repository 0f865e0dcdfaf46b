"""Keras layers in a ``model.to_json()`` → fitq layer dicts, one converter per supported
class (``_Layer._<ClassName>``). A converter takes the config keys that mean something to
fitq, and refuses any other key unless it is null/false or at a neutral value, naming the
layer and its index; names and values are validated by the spec afterwards."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from fitq.service.errors import InvalidSpec
from fitq.service.spec.base import name_key
from fitq.service.spec.keras_values import config_object, f32_shortest, keras_object

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


class KerasLayer:
    """One Keras layer object and what fitq makes of it."""

    def __init__(self, layer: Mapping[str, Any], index: int, legacy: bool, shape: list[int] | None):
        self.class_name: str = layer["class_name"]
        self.index = index
        self.legacy = legacy
        self.shape = shape  # the input's shape (None: unknown); convert() sets the output's
        raw = config_object(layer.get("config"), f"layer {index} ({self.class_name}): the config")
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
