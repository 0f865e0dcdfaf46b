"""Keras' callbacks of ``fit``: EarlyStopping, ReduceLROnPlateau, TerminateOnNaN.

fitq's normalized form has one key per callback, ``fit.early_stopping`` and
``fit.reduce_lr_on_plateau`` (an object with every key, or null). A list as Keras'
``fit(callbacks=[…])`` takes one is accepted too, and folded into those keys::

    "callbacks": [{"type": "reduce_lr_on_plateau", "patience": 3},
                  {"class_name": "EarlyStopping", "config": {"patience": 5}},
                  {"type": "terminate_on_nan"}]

TerminateOnNaN is accepted and dropped: every fitq fit stops at the first NaN or Inf
loss (the job then fails: the update computed from that loss has already made the
weights NaN, in Keras too). So is History, which every fit keeps (the job's metrics).
``verbose`` is accepted and ignored. Each callback at most once. The engine's
``worker/engine/callbacks.py`` gives their rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from fitq.service.errors import InvalidSpec
from fitq.service.spec import keras
from fitq.service.spec.base import FLOAT32_MAX, NonNegative, Strict, fail, name_key
from fitq.service.spec.metrics import METRICS
from fitq.service.spec.names import Names


def _monitor(value: Any) -> Any:
    """Keras' spellings of a History key: ``val_acc`` → ``val_accuracy``."""
    if not isinstance(value, str):
        return value
    prefix, base = ("val_", value[4:]) if value.startswith("val_") else ("", value)
    canonical = "loss" if base == "loss" else METRICS.get(name_key(base))
    return prefix + canonical if canonical else value


Monitor = Annotated[str, BeforeValidator(_monitor)]
MinDelta = Annotated[float, BeforeValidator(lambda v: abs(v) if type(v) in (int, float) else v)]
"""Keras takes ``min_delta``'s absolute value."""
Mode = Literal["auto", "min", "max"]


class _Callback(Strict):
    @classmethod
    def _prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        data.pop("verbose", None)  # printing: nothing to print to
        return data


class EarlyStopping(_Callback):
    """Keras 3's EarlyStopping, every argument (``verbose`` ignored)."""

    monitor: Monitor = "val_loss"
    min_delta: MinDelta = 0.0
    patience: int = Field(default=0, ge=0)
    mode: Mode = "auto"
    baseline: float | None = Field(default=None, ge=-FLOAT32_MAX, le=FLOAT32_MAX)
    restore_best_weights: bool = False
    start_from_epoch: int = Field(default=0, ge=0)


class ReduceLROnPlateau(_Callback):
    """Keras 3's ReduceLROnPlateau (``verbose`` ignored); factor in (0, 1)."""

    monitor: Monitor = "val_loss"
    factor: Annotated[float, Field(gt=0, lt=1)] = 0.1
    patience: int = Field(default=10, ge=0)
    mode: Mode = "auto"
    min_delta: MinDelta = 0.0001
    cooldown: int = Field(default=0, ge=0)
    min_lr: NonNegative = 0.0


CALLBACK_CLASSES: dict[str, type[BaseModel]] = {
    "early_stopping": EarlyStopping,
    "reduce_lr_on_plateau": ReduceLROnPlateau,
}
"""The callbacks the fit spec keeps, each under its own key of ``fit``."""
CALLBACKS = Names("callback", [*CALLBACK_CLASSES, "terminate_on_nan", "history"])


def fold(fit: dict[str, Any]) -> dict[str, Any]:
    """``fit`` with its ``callbacks`` list (if any) folded into the per-callback keys, where
    they are validated (an error then names ``fit.early_stopping.…``)."""
    if "callbacks" not in fit:
        return fit
    entries = fit.pop("callbacks")
    if not isinstance(entries, list):
        fail(("callbacks",), "callbacks_type", "callbacks must be a list of callbacks", entries)
    for index, entry in enumerate(entries):
        name, params = _entry(entry, index)
        if name == "terminate_on_nan":
            _terminate_on_nan(params, index)
            continue
        if name == "history":  # Keras adds it to every fit; so does fitq (the job's metrics)
            continue
        if fit.get(name) is not None:
            fail(
                ("callbacks", index),
                "callback_twice",
                f"{name} is given twice (in callbacks and as fit.{name}, or twice in the list)",
            )
        fit[name] = params
    return fit


def _entry(entry: Any, index: int) -> tuple[str, dict[str, Any]]:
    """One list entry → (canonical name, its parameters)."""
    if isinstance(entry, Mapping) and "class_name" in entry:
        try:
            class_name, config = keras.keras_object(entry)
        except InvalidSpec as exc:
            fail(("callbacks", index), "keras_object", exc.message, entry)
        return _name(class_name, index), config
    if isinstance(entry, Mapping) and "type" in entry:
        return _name(entry["type"], index), {k: v for k, v in entry.items() if k != "type"}
    fail(
        ("callbacks", index),
        "callback_type",
        f"a callback is an object with a 'type' (one of: {CALLBACKS.expected}) or Keras' "
        "class_name and config",
        entry,
    )


def _terminate_on_nan(params: dict[str, Any], index: int) -> None:
    """Keras' TerminateOnNaN: what every fitq fit does, so only checked (``raise_error``,
    a boolean, either way)."""
    for key, value in params.items():
        if key != "raise_error":
            fail(
                ("callbacks", index, key),
                "unknown_field",
                f"unknown field {key!r}; expected: raise_error",
            )
        if not isinstance(value, bool):
            fail(("callbacks", index, key), "bool_type", "must be true or false", value)


def _name(value: Any, index: int) -> str:
    try:
        return CALLBACKS.lookup(value)[0]
    except PydanticCustomError as exc:
        fail(("callbacks", index), exc.type, exc.message(), value)
