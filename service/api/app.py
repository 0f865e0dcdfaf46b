"""The FastAPI application: ``create_app(settings)``.

At start-up it refuses a database whose schema is behind (``check_schema``,
which ``fitq api`` also calls before uvicorn starts) and registers
``FITQ_API_KEY`` once. The rest has a module each: the routes
(``routes/``), how errors are rendered (``errors.py``), the OpenAPI document
(``openapi.py``), the Prometheus middleware and text (``prometheus.py``), the
refusal of unstorable text in a URL or a header before routing (``guard.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
from fastapi import FastAPI

from fitq.service import auth, logs
from fitq.service.api import errors, guard, openapi, prometheus, sse
from fitq.service.api.routes import dashboard, datasets, events, jobs, ops, sweeps
from fitq.service.db import migrate
from fitq.service.db.engine import engine_for, session_factory, transaction
from fitq.service.settings import Settings, get_settings
from fitq.service.store import ArtifactStore

ROUTERS = (
    ops.router,
    datasets.router,
    jobs.router,
    sweeps.router,
    events.router,
    dashboard.router,
)
"""Every router of the API."""


def check_schema(url: str) -> None:
    """Raise ``RuntimeError`` unless the database at ``url`` is at the newest migration."""
    if not migrate.is_at_head(url):
        raise RuntimeError(errors.SCHEMA_BEHIND)


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
        docs_url=None,  # /docs and /redoc: routes/dashboard.py, from vendored files
        redoc_url=None,
    )
    configure(app, settings or get_settings())
    app.add_middleware(guard.RefuseUnstorableText)  # inside the catch-all that install() adds
    errors.install(app)
    app.add_middleware(prometheus.PrometheusMiddleware)
    for router in ROUTERS:
        app.include_router(router)
    dashboard.mount_static(app)
    openapi.customize(app)
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
    url, timeout = settings.resolved_database_url, settings.statement_timeout_seconds
    app.state.settings = settings
    app.state.engine = engine_for(url, statement_timeout_seconds=timeout)
    app.state.read_limiter = anyio.CapacityLimiter(settings.api_read_threads)
    app.state.session_factory = session_factory(url, statement_timeout_seconds=timeout)
    app.state.stream_slots = sse.StreamSlots(settings.max_streams, settings.max_streams_per_key)
    app.state.stream_limiter = anyio.CapacityLimiter(sse.POLL_THREADS)
    app.openapi_schema = None  # the document states some settings (predict's rows): rebuilt
    app.state.store = ArtifactStore.from_settings(settings)
