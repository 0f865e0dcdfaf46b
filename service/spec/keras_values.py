"""Values in a Keras export, read as data: a serialized object (``{"class_name",
"config"}``), a config object, and Keras' float32 hyperparameters read back as the
numbers a person typed. Shared by the model, layer and part converters."""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any

from fitq.service.errors import InvalidSpec


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
    config = config_object(value.get("config"), f"the config of Keras object {class_name!r}")
    return class_name, {k: f32_shortest(v) for k, v in config.items()}


def config_object(value: Any, what: str) -> Mapping[str, Any]:
    """``value`` as a config object (null → empty); anything else is refused."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpec(f"{what} must be an object, got {json_type(value)}")
    return value


def json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
