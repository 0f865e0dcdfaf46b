"""A request body → ``JobSpec``, and validation errors as readable messages.

- ``parse_spec(body)`` — raw bytes/str/dict → ``JobSpec``, or one ``InvalidSpec``
  (422) whose message reads ``"model.layers.1.units: must be ≥ 1 (got 0)"`` and whose
  ``loc`` is ``["body", "model", "layers", 1, "units"]``.
- ``validation_errors(exc)`` renders a ``ValidationError`` (what FastAPI raises for a
  ``body: JobSpec``) the same way, for a ``RequestValidationError`` handler.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from fitq.service.errors import InvalidSpec
from fitq.service.spec import json_schema
from fitq.service.spec.base import DEFAULT_LIMITS, FLOAT32_MAX, SpecLimits
from fitq.service.spec.job import JobSpec


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
    try:  # 3.0 is an integer, as the OpenAPI document's schema says
        return json_schema.validate(data, {"limits": limits or DEFAULT_LIMITS})
    except ValidationError as exc:
        errors = exc.errors()
        messages = [format_error(e) for e in errors]
        message = messages[0]
        if len(messages) > 1:
            more = "; ".join(messages[1:4]) + ("; …" if len(messages) > 4 else "")
            message += f" (and {len(messages) - 1} more: {more})"
        raise InvalidSpec(message, loc=["body", *errors[0]["loc"]]) from None


STORED_SPEC_LIMITS = SpecLimits(max_epochs=2**31 - 1, max_layers=2**31 - 1, max_parameters=2**62)
"""No service limits for a spec already stored: they were the submit's to apply."""


def up_to_date(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A normalized spec stored by an earlier fitq, brought up to today's contract.

    Normalizing is idempotent (a normalized spec normalizes to itself), so doing it
    again fills the keys the contract gained since the spec was stored and changes
    nothing else; a worker therefore trains, and the API predicts with, specs queued
    before an upgrade. A spec that today's rules refuse is returned as it was: the
    engine then refuses it, and the job fails with the reason."""
    try:
        return parse_spec(stored, limits=STORED_SPEC_LIMITS).model_dump(mode="json")
    except InvalidSpec:
        return dict(stored)


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
    """``0.0`` → ``0`` in messages ("must be > 0"); float32's limit named as such."""
    if isinstance(value, float) and abs(value) == FLOAT32_MAX:
        return f"{value:.8g} (the largest float32, in which the engine computes)"
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
