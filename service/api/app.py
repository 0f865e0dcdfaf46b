"""The FastAPI application: ``create_app(settings)``.

At start-up it refuses a database whose schema is behind (``check_schema``,
which ``fitq api`` also calls before uvicorn starts) and registers
``FITQ_API_KEY`` once. Errors: every ``FitqError`` is rendered by one handler
as ``{"detail": message}`` (plus ``loc``) with its status; FastAPI's own
request validation stays a 422 with its list ``detail``; a database that is
away (restarting, its connections terminated, unreachable) is a
``503 {"detail": "database unavailable; …"}`` with ``Retry-After``, never a 500;
anything unexpected is logged with its traceback and answered
``500 {"detail": "internal error"}``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fitq.service import auth, logs, metrics
from fitq.service import spec as specs
from fitq.service.api import dashboard, events, links
from fitq.service.api.routes import datasets, jobs, ops
from fitq.service.db import migrate
from fitq.service.db.availability import describe as describe_database_error
from fitq.service.db.availability import is_unavailable
from fitq.service.db.engine import engine_for, session_factory, transaction
from fitq.service.errors import FitqError
from fitq.service.settings import Settings, get_settings
from fitq.service.store import ArtifactStore

log = logging.getLogger("fitq.api")

ROUTERS = (ops.router, datasets.router, jobs.router, events.router)
"""Every router of the API (the dashboard's page and files are mounted apart)."""

SCHEMA_BEHIND = ops.SCHEMA_BEHIND
DATABASE_UNAVAILABLE = ops.DATABASE_UNAVAILABLE


def check_schema(url: str) -> None:
    """Raise ``RuntimeError`` unless the database at ``url`` is at the newest migration."""
    if not migrate.is_at_head(url):
        raise RuntimeError(SCHEMA_BEHIND)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API over ``settings`` (default: the environment's)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        current: Settings = app.state.settings
        url = current.resolved_database_url
        check_schema(url)
        # Sync routes and dependencies run on these threads, each with at most
        # one pooled connection (see FITQ_API_THREADS).
        anyio.to_thread.current_default_thread_limiter().total_tokens = current.api_threads
        if current.api_key:
            with transaction(url) as session:
                auth.ensure_key(session, "env", current.api_key)
        yield

    app = FastAPI(
        title="fitq",
        version="1",
        summary="Train dense neural networks from Keras-style specs.",
        lifespan=lifespan,
    )
    configure(app, settings or get_settings())

    app.add_exception_handler(FitqError, _render_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _render_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(DBAPIError, _render_database_error)  # type: ignore[arg-type]
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(metrics.MetricsMiddleware)

    for router in ROUTERS:
        app.include_router(router)
    dashboard.mount(app)
    _document_job_spec(app)
    return app


def served_app() -> FastAPI:
    """The app as ``fitq api`` serves it (the uvicorn factory, in each of its
    processes): the environment's settings, and logs in their format."""
    settings = get_settings()
    logs.configure(settings.log_format)
    return create_app(settings)


def configure(app: FastAPI, settings: Settings) -> None:
    """Point ``app`` at ``settings``: its database, its store, its limits.

    Everything a request needs is read from ``app.state``, so tests can reuse
    one app (FastAPI builds each route on its first request) across settings.
    """
    app.state.settings = settings
    app.state.engine = engine_for(settings.resolved_database_url)
    app.state.read_limiter = anyio.CapacityLimiter(settings.api_read_threads)
    app.state.session_factory = session_factory(settings.resolved_database_url)
    app.state.store = ArtifactStore.from_settings(settings)


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
        headers={"Retry-After": str(ops.RETRY_AFTER_SECONDS)},
    )


async def _render_http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """FastAPI's rendering, except that a 405's ``Allow`` names the methods of
    every operation on the path (Starlette names only those of the first route)."""
    if exc.status_code == 405:
        methods = _documented_methods(request.app, request.url.path)
        if methods:
            allow = {"Allow": ", ".join(methods)}
            exc = StarletteHTTPException(405, exc.detail, headers={**(exc.headers or {}), **allow})
    return await http_exception_handler(request, exc)


def _documented_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document gives ``path`` (HEAD with GET, as Starlette serves it)."""
    methods: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        if compile_path(template)[0].match(path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


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


def _document_job_spec(app: FastAPI) -> None:
    """Show the job spec's own schema as the body of ``POST /v1/jobs`` (the
    route reads a plain JSON object and validates it with ``service.spec``),
    and link the create operations to the operations on what they made."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = default_openapi()
        spec_schema = specs.JobSpec.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(spec_schema.pop("$defs", {}))
        components["JobSpec"] = spec_schema
        schema["paths"]["/v1/jobs"]["post"]["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}}},
        }
        links.add_links(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
