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

Each layer is converted by ``keras_layers`` (unknown options in a layer's config are
ignored when null or false — new Keras versions keep adding such switches, e.g.
``quantization_config: null`` — and refused otherwise, so nothing that changes the model
is dropped silently); the values of a config are read by ``keras_values``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from fitq.service.errors import InvalidSpec
from fitq.service.spec.keras_layers import SUPPORTED_LAYERS, KerasLayer, activation_name
from fitq.service.spec.keras_values import config_object, f32_shortest, json_type, keras_object

__all__ = [
    "SUPPORTED_LAYERS",
    "activation_name",
    "compile_config",
    "f32_shortest",
    "keras_object",
    "loads",
    "model_from_keras",
]


def loads(source: str | bytes | bytearray | Mapping[str, Any]) -> dict[str, Any]:
    """The Keras JSON text (or its already-parsed object) as a dict."""
    if isinstance(source, Mapping):
        return dict(source)
    if not isinstance(source, str | bytes | bytearray):
        raise InvalidSpec(
            f"keras_json must be a string (Keras' model.to_json()), got {json_type(source)}"
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
            f"keras_json must be a JSON object (Keras' model.to_json()), got {json_type(doc)}"
        )
    return doc


def compile_config(
    source: str | bytes | bytearray | Mapping[str, Any],
) -> dict[str, Any] | None:
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
        converter = KerasLayer(layer, index, legacy, shape)
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


def _input_layer_shape(layer: Mapping[str, Any]) -> list[int]:
    config = config_object(layer.get("config"), "the InputLayer's config")
    for key in ("batch_shape", "batch_input_shape"):
        if config.get(key) is not None:
            return _input_shape(config[key], batched=True, where="the InputLayer")
    if config.get("shape") is not None:
        return _input_shape(config["shape"], batched=False, where="the InputLayer")
    raise InvalidSpec("the InputLayer has no shape (batch_shape or batch_input_shape)")


def _first_layer_shape(layer: Mapping[str, Any]) -> list[int] | None:
    where = f"layer 0 ({layer.get('class_name')})"
    config = config_object(layer.get("config"), f"{where}: the config")
    for key in ("batch_input_shape", "batch_shape"):
        if config.get(key) is not None:
            return _input_shape(config[key], batched=True, where=where)
    if config.get("input_shape") is not None:
        return _input_shape(config["input_shape"], batched=False, where=where)
    if isinstance(config.get("input_dim"), int):
        return [int(config["input_dim"])]
    build = config_object(layer.get("build_config"), f"{where}: build_config")
    if build.get("input_shape") is not None:
        return _input_shape(build["input_shape"], batched=True, where=where)
    return None


def _model_shape(doc: Mapping[str, Any]) -> list[int] | None:
    config = doc.get("config") if isinstance(doc.get("config"), Mapping) else {}
    assert isinstance(config, Mapping)
    build = config_object(doc.get("build_config"), "the model's build_config")
    for shape in (config.get("build_input_shape"), build.get("input_shape")):
        if shape is not None:
            return _input_shape(shape, batched=True, where="the model")
    return None


def _shape_text(shape: Any) -> str:
    if isinstance(shape, list | tuple):
        inner = ", ".join("None" if d is None else str(d) for d in shape)
        return f"({inner},)" if len(shape) == 1 else f"({inner})"
    return repr(shape)
