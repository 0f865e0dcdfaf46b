"""Responses: the errors a route declares (for the OpenAPI document), and
JSON bodies sent as they are."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Response
from pydantic import BaseModel

from fitq.service.api.schemas import Error, ValidationErrors

DESCRIPTIONS = {
    400: "The body is not valid JSON.",
    401: "No valid API key (the response carries `WWW-Authenticate: Bearer`).",
    404: "No such resource, or it belongs to another key.",
    409: "The resource is in a state that does not allow this.",
    413: "The body is over the configured limit.",
    422: "The request is well-formed but not valid; `loc` names the field.",
    429: "A quota of this key is full; `Retry-After` says when to try again.",
    503: "Not ready: the database is unreachable or its schema is behind.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each code with the error body and what it means."""
    return {
        code: {
            "model": Error | ValidationErrors if code == 422 else Error,
            "description": DESCRIPTIONS[code],
        }
        for code in codes
    }


def json_response(
    body: BaseModel, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``body`` as JSON, serialized once by pydantic. Every route returns its
    ``Response`` so: FastAPI would validate a returned model against the
    ``response_model`` again, on a thread of the pool, before the session
    dependency's commit (see ``deps.get_session``)."""
    return Response(
        body.model_dump_json(),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )
