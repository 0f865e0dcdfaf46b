"""The HTML pages (``/``, ``/docs``, ``/redoc``): every URL they reference is on
this origin and is served, their policy names no other origin, and every HTML
response of the app carries a ``Content-Security-Policy``."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.routing import APIRoute

from fitq.service.api.app import ROUTERS

pytestmark = pytest.mark.anyio

PAGES = ("/", "/docs", "/redoc")
REFERENCE = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")


def references(html: str) -> list[str]:
    return [a or b for a, b in REFERENCE.findall(html)]


def directives(policy: str) -> dict[str, list[str]]:
    parts = (d.split() for d in policy.split(";") if d.strip())
    return {name: values for name, *values in parts}


@pytest.mark.parametrize("path", PAGES)
async def test_a_page_references_only_this_origin_and_every_asset_is_served(
    client: httpx.AsyncClient, path: str
) -> None:
    page = await client.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    found = references(page.text)
    assert found, "the page should load its assets"
    for url in found:
        if url.startswith("#"):
            continue
        assert not urlsplit(url).scheme and not urlsplit(url).netloc, url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url


async def test_the_docs_load_the_vendored_files(client: httpx.AsyncClient) -> None:
    docs, redoc = (await client.get("/docs")).text, (await client.get("/redoc")).text
    assert "/static/vendor/swagger-ui-bundle.js" in docs
    assert "/static/vendor/swagger-ui.css" in docs
    assert "/static/vendor/redoc.standalone.js" in redoc
    assert "fonts.googleapis" not in redoc and "cdn" not in (docs + redoc).lower()
    bundle = await client.get("/static/vendor/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in bundle.content


@pytest.mark.parametrize("path", PAGES)
async def test_the_policy_allows_this_origin_only(client: httpx.AsyncClient, path: str) -> None:
    policy = directives((await client.get(path)).headers["content-security-policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"]
    for values in policy.values():
        for value in values:
            assert value.startswith("'") or value in ("data:", "blob:"), value
    assert "'unsafe-inline'" not in policy.get("script-src", [])
    assert "'unsafe-eval'" not in policy.get("script-src", [])


async def test_swagger_boot_script_runs_by_a_fresh_nonce(client: httpx.AsyncClient) -> None:
    nonces = []
    for _ in range(2):
        page = await client.get("/docs")
        script_src = directives(page.headers["content-security-policy"])["script-src"]
        (nonce,) = (v[len("'nonce-") : -1] for v in script_src if v.startswith("'nonce-"))
        inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", page.text)
        assert inline == [f' nonce="{nonce}"'], "every inline script carries the nonce"
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


async def test_every_html_response_carries_a_policy(client: httpx.AsyncClient) -> None:
    """Every GET route of every router without parameters: what answers HTML has a CSP."""
    paths = {
        router.prefix + route.path
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and "GET" in route.methods
    }
    plain = sorted(p for p in paths if "{" not in p)
    html = []
    for path in plain:
        response = await client.get(path)
        if response.headers.get("content-type", "").startswith("text/html"):
            html.append(path)
            assert "content-security-policy" in response.headers, path
    assert set(PAGES) <= set(html), plain
