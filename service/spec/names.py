"""Names of one kind (activation, loss, …): canonical names, aliases, presets, and how a
Keras serialized object ``{"class_name", "config"}`` becomes fitq parameters.

Names are matched ignoring case, ``_``, ``-`` and spaces (``base.name_key``), so Keras'
class names (``"RMSprop"``) and function names (``"rmsprop"``) both resolve.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic_core import PydanticCustomError

from fitq.service.errors import InvalidSpec
from fitq.service.spec import keras
from fitq.service.spec.base import is_neutral, name_key

REGISTRY: dict[str, Names] = {}
"""Every kind of name, by kind: what ``json_schema`` states each bare name from."""


class Names:
    """One kind of name (activation, loss, …): canonical names, aliases, presets.

    Each registers itself in ``REGISTRY``, so the OpenAPI document states the
    names this table accepts (``json_schema.bare_name``), never a copy."""

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
        # Every name as written here, canonical first: what the OpenAPI document lists.
        self.spellings = list(dict.fromkeys([*canonical, *(aliases or {})]))
        REGISTRY[kind] = self

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
        self, value: Any, from_keras: Callable[[str, dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        """A bare name, ``{"name": …, params}`` or Keras' ``{"class_name", "config"}`` →
        ``{"name": canonical, params}`` (defaults are filled by the model)."""
        if isinstance(value, str):
            name, preset = self.lookup(value)
            return {"name": name, **preset}
        if isinstance(value, Mapping) and "class_name" in value:
            try:
                class_name, config = keras.keras_object(value)
            except InvalidSpec as exc:
                raise PydanticCustomError("keras_object", exc.message) from None
            name, preset = self.lookup(class_name)
            return {"name": name, **preset, **from_keras(class_name, config)}
        if isinstance(value, Mapping) and "name" in value:
            name, preset = self.lookup(value["name"])
            return {**preset, **value, "name": name}
        raise PydanticCustomError(
            "name_type",
            "{kind} must be a name or an object with a 'name', one of: {expected}",
            {"kind": self.kind, "expected": self.expected},
        )


def keras_config(
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
            if not is_neutral(value, neutral[key]):
                raise PydanticCustomError(
                    "unsupported",
                    "{kind} {cls}: {key}={value} is not supported by fitq",
                    {"kind": kind, "cls": class_name, "key": key, "value": json.dumps(value)},
                )
            continue
        params[key] = value
    return params
