"""The web dashboard: ``/`` is its page, ``/static/…`` its files
(``service/api/static/``, shipped with the package; nothing loaded from elsewhere)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    """The dashboard's single page (it talks to /v1 with the key the user enters)."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def mount_static(app: FastAPI) -> None:
    """Serve the dashboard's files under ``/static``."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
