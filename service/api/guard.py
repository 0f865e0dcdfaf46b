"""The first look at a request, before routing and before its key is checked:
text in its path, query or headers that no database can hold is a 422 naming
the parameter (``untrusted.problem``: a NUL, a lone surrogate).

Path and query parameters reach SQL as ids, filters, cursors and idempotency
keys; PostgreSQL refuses a NUL in any of them, and before this a
``GET /v1/jobs/a%00b`` with any key was a 500 with a traceback. One check
here covers every route, including those added later; JSON bodies are
checked as they are parsed (``untrusted.loads``) and multipart fields as they
are received (``api/upload.py``).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi.responses import JSONResponse
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from fitq.service import untrusted
from fitq.service.errors import InvalidInput


class RefuseUnstorableText:
    """ASGI middleware: a 422 for a path, query or header that holds unstorable text."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                _check(scope)
            except InvalidInput as exc:
                await JSONResponse(exc.to_detail(), status_code=exc.status_code)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


def _check(scope: Scope) -> None:
    path: str = scope["path"]
    if untrusted.problem(path) is not None:
        for name, value in _path_params(scope).items():
            untrusted.check_text(value, ["path", name], f"path parameter {name!r}")
        untrusted.check_text(path, ["path"], "the path")
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        untrusted.check_text(name, ["query"], "a query parameter's name")
        untrusted.check_text(value, ["query", name], f"query parameter {name!r}")
    for raw_name, raw_value in scope["headers"]:
        if b"\x00" in raw_value:
            name = raw_name.decode("latin-1").lower()
            raise InvalidInput(
                f"header {name!r} holds a NUL character, which fitq does not store",
                loc=["header", name],
            )


def _path_params(scope: Scope) -> dict[str, str]:
    """The path parameters of the documented operation ``scope`` matches (none: no match)."""
    app = scope.get("app")
    if app is None:
        return {}
    for template in app.openapi()["paths"]:
        match = compile_path(template)[0].match(scope["path"])
        if match is not None:
            return match.groupdict()
    return {}
