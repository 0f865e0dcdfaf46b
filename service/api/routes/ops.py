"""Probes and Prometheus: /healthz, /readyz, /metrics (no key needed)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from fitq.service.api.deps import SettingsDep
from fitq.service.api.errors import (
    RETRY_AFTER_SECONDS,
    SCHEMA_BEHIND,
    error_responses,
)
from fitq.service.api.prometheus import CONTENT_TYPE, render
from fitq.service.api.schemas import Health, json_response
from fitq.service.db import migrate

router = APIRouter(tags=["operations"])
log = logging.getLogger("fitq.api")


@router.get("/healthz", response_model=Health)
def healthz() -> Response:
    """Liveness: the process answers."""
    return json_response(Health(status="ok"))


@router.get("/readyz", response_model=Health, responses=error_responses(503))
def readyz(settings: SettingsDep) -> Response:
    """Readiness: the database answers and its schema is at the newest migration."""
    url = settings.resolved_database_url
    try:
        at_head = migrate.is_at_head(url)
    except Exception as exc:  # any failure to reach the database means "not ready"
        log.warning("database unreachable", extra={"action": "readyz", "error": str(exc)})
        return JSONResponse(
            {"detail": f"database unreachable: {type(exc).__name__}"},
            503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if not at_head:
        return JSONResponse({"detail": SCHEMA_BEHIND}, 503)
    return JSONResponse({"status": "ok"})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text."}},
)
def prometheus(request: Request, settings: SettingsDep) -> Response:
    """Prometheus metrics: requests, the queue, job counters, epoch durations, worker heartbeats."""
    with request.app.state.session_factory() as session:
        body = render(session, lease_seconds=settings.lease_seconds)
    return Response(content=body, media_type=CONTENT_TYPE)
