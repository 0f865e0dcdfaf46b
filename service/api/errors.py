"""Errors on the wire: how each is rendered, and how a route declares them.

- every ``FitqError`` (``service/errors.py``) is rendered by one handler as
  ``{"detail": message}`` (plus ``loc``) with its status and headers;
- FastAPI's own request validation stays a 422 with its list ``detail``, and
  a 405's ``Allow`` names every method of the path;
- a database that is away (restarting, its connections terminated,
  unreachable) is a ``503 {"detail": "database unavailable; …"}`` with
  ``Retry-After``, never a 500;
- anything unexpected is logged with its traceback and answered
  ``500 {"detail": "internal error"}`` (:class:`CatchAllMiddleware`).

Routes declare the errors they answer with :func:`error_responses`, for the
OpenAPI document.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fitq.service.api import openapi
from fitq.service.api.schemas import Error, ValidationErrors
from fitq.service.db.availability import describe as describe_database_error
from fitq.service.db.availability import is_unavailable
from fitq.service.errors import FitqError

log = logging.getLogger("fitq.api")

SCHEMA_BEHIND = "database schema is not up to date; run `fitq db upgrade`"
DATABASE_UNAVAILABLE = "database unavailable; retry shortly"
RETRY_AFTER_SECONDS = 2
"""What a 503 for an unreachable database tells clients to wait (``Retry-After``)."""

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


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each code with the error body and what it means."""
    return {
        code: {
            "model": Error | ValidationErrors if code == 422 else Error,
            "description": DESCRIPTIONS[code],
        }
        for code in codes
    }


def install(app: FastAPI) -> None:
    """Render every error of ``app`` as above."""
    app.add_exception_handler(FitqError, _render_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _render_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(DBAPIError, _render_database_error)  # type: ignore[arg-type]
    app.add_middleware(CatchAllMiddleware)


async def _render_error(request: Request, exc: FitqError) -> JSONResponse:
    headers = dict(exc.headers) or None  # WWW-Authenticate on a 401, Retry-After on a 429
    if exc.status_code >= 500:
        log.error("internal error", exc_info=exc, extra={"path": request.url.path})
    return JSONResponse(exc.to_detail(), status_code=exc.status_code, headers=headers)


async def _render_database_error(request: Request, exc: DBAPIError) -> JSONResponse:
    """A database that is away is the client's cue to come back later (503,
    ``Retry-After``); any other database error is ours (500, logged)."""
    if not is_unavailable(exc):
        log.error("internal error", exc_info=exc, extra={"path": request.url.path})
        return JSONResponse({"detail": "internal error"}, status_code=500)
    log.warning(
        "database unavailable",
        extra={"path": request.url.path, "error": describe_database_error(exc)},
    )
    return JSONResponse(
        {"detail": DATABASE_UNAVAILABLE},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _render_http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """FastAPI's rendering, except that a 405's ``Allow`` names the methods of
    every operation on the path (Starlette names only those of the first route)."""
    if exc.status_code == 405:
        methods = openapi.documented_methods(request.app, request.url.path)
        if methods:
            allow = {"Allow": ", ".join(methods)}
            exc = StarletteHTTPException(405, exc.detail, headers={**(exc.headers or {}), **allow})
    return await http_exception_handler(request, exc)


class CatchAllMiddleware:
    """The last line: an exception nobody handled becomes a logged 500 with a
    generic body (never a traceback on the wire, never a dropped connection)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            log.info("client disconnected", extra={"path": scope.get("path")})
        except Exception:
            log.exception(
                "unhandled error", extra={"method": scope.get("method"), "path": scope.get("path")}
            )
            if started:
                raise
            response = JSONResponse({"detail": "internal error"}, status_code=500)
            await response(scope, receive, send)
