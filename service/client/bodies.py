"""What a request carries, made from Python values: a dataset's arrays as the NPZ
an upload sends, a job spec from a dict or a compiled Keras model, and the list's
query values (repeatable parameters, instants)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np


def npz_bytes(x: Any, y: Any) -> bytes:
    """Arrays as the NPZ file an upload sends (``x`` float32, ``y`` as given)."""
    buffer = io.BytesIO()
    np.savez(buffer, x=np.asarray(x, dtype=np.float32), y=np.asarray(y))
    return buffer.getvalue()


def spec_of(spec: Any) -> dict[str, Any]:
    """A job spec from a dict (copied: the caller's never changes) or a compiled Keras
    model: ``keras_json`` (``model.to_json()``) and ``compile_config``
    (``model.get_compile_config()``), which the server reads as Keras writes them."""
    if isinstance(spec, Mapping):
        copied: dict[str, Any] = json.loads(json.dumps(spec))
        return copied
    if not callable(getattr(spec, "to_json", None)):
        raise TypeError(f"fit takes a spec (a dict) or a Keras model, not {type(spec).__name__}")
    config = (
        spec.get_compile_config() if callable(getattr(spec, "get_compile_config", None)) else None
    )
    if not config:
        raise ValueError("the Keras model is not compiled: call model.compile(...) before fit")
    body: dict[str, Any] = json.loads(
        json.dumps(
            {"keras_json": json.loads(spec.to_json()), "compile_config": config}, default=_plain
        )
    )
    return body


def listed(value: str | Sequence[str] | None) -> list[str] | None:
    """A repeatable query parameter's values (one string is one value)."""
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def instant(value: datetime | str | None, field: str) -> str | None:
    """An aware datetime as ISO 8601 text (text as given: the server checks it)."""
    if not isinstance(value, datetime):
        return value
    if value.tzinfo is None:
        raise ValueError(f"{field} needs a time zone (a naive datetime is no one instant)")
    return value.isoformat()


def _plain(value: Any) -> Any:
    """numpy scalars in a Keras compile config, as JSON numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
