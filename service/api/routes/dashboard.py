"""The HTML pages: ``/`` the dashboard, ``/docs`` (Swagger UI) and ``/redoc`` the API
docs, and ``/static/…`` their files (``service/api/static/``, shipped with the
package: the docs' scripts are vendored in ``static/vendor/``, nothing is loaded
from another origin, so the docs work on an offline server).

Each page carries a ``Content-Security-Policy`` that allows this origin and only
what that page needs: the dashboard keeps the API key in the browser, so no
third-party or injected script may run beside it.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
VENDOR = "/static/vendor"
FAVICON = f"{VENDOR}/favicon-32x32.png"
BASE_POLICY = (
    "default-src 'self'; base-uri 'none'; object-src 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
DASHBOARD_POLICY = f"{BASE_POLICY}; style-src-attr 'unsafe-inline'"
"""The dashboard's own files; its markup sets widths and colours in ``style`` attributes."""
REDOC_POLICY = (
    f"{BASE_POLICY}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src blob:"
)
"""ReDoc injects its styles as ``<style>`` elements and runs its search in a blob worker."""
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


def swagger_policy(nonce: str) -> str:
    """Swagger UI's files plus its one inline boot script (allowed by ``nonce``)."""
    return f"{BASE_POLICY}; script-src 'self' 'nonce-{nonce}'; img-src 'self' data:"


@router.get("/")
def index() -> FileResponse:
    """The dashboard's single page (it talks to /v1 with the key the user enters)."""
    headers = {**NO_CACHE, "Content-Security-Policy": DASHBOARD_POLICY}
    return FileResponse(STATIC_DIR / "index.html", headers=headers)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """The OpenAPI document in Swagger UI, from the vendored files."""
    page = get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} API",
        swagger_js_url=f"{VENDOR}/swagger-ui-bundle.js",
        swagger_css_url=f"{VENDOR}/swagger-ui.css",
        swagger_favicon_url=FAVICON,
    )
    nonce = secrets.token_urlsafe(16)
    body = bytes(page.body).replace(b"<script>", f'<script nonce="{nonce}">'.encode())
    headers = {**NO_CACHE, "Content-Security-Policy": swagger_policy(nonce)}
    return HTMLResponse(body, headers=headers)


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """The OpenAPI document in ReDoc, from the vendored file (no web fonts)."""
    page = get_redoc_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} API",
        redoc_js_url=f"{VENDOR}/redoc.standalone.js",
        redoc_favicon_url=FAVICON,
        with_google_fonts=False,
    )
    headers = {**NO_CACHE, "Content-Security-Policy": REDOC_POLICY}
    return HTMLResponse(bytes(page.body), headers=headers)


def mount_static(app: FastAPI) -> None:
    """Serve the pages' files under ``/static``."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
