"""The first look at a request, before routing and before its key is checked:
text in its path, query or headers that no database can hold is a 422 naming
the parameter (``untrusted.problem``: a NUL, a lone surrogate), and so is a
path id that is not one fitq makes (``ID_PATTERN``: ids reach SQL only in
their own alphabet). The OpenAPI document states both (``api/openapi.py``).

Path and query parameters reach SQL as ids, filters, cursors and idempotency
keys; PostgreSQL refuses a NUL in any of them, and before this a
``GET /v1/jobs/a%00b`` with any key was a 500 with a traceback. One check
here covers every route, including those added later; JSON bodies are
checked as they are parsed (``untrusted.loads``) and multipart fields as they
are received (``api/upload.py``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from fastapi.responses import JSONResponse
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from fitq.service import untrusted
from fitq.service.errors import InvalidInput

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""Every id fitq makes (a uuid's hex, a built-in dataset's name) and so every
``{…_id}`` path parameter it takes."""
_ID = re.compile(ID_PATTERN)
_PLAIN_PATH = re.compile(r"(?:/[A-Za-z0-9_-]{1,64})*/?")
"""A path whose every segment could be an id: no parameter in it can be refused."""


class RefuseUnstorableText:
    """ASGI middleware: a 422 for a path, query or header that holds unstorable
    text, or a path id outside ``ID_PATTERN``."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self._templates: list[re.Pattern[str]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                self._check_path(scope)
                _check_query_and_headers(scope)
            except InvalidInput as exc:
                await JSONResponse(exc.to_detail(), status_code=exc.status_code)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)

    def _check_path(self, scope: Scope) -> None:
        path: str = scope["path"]
        if _PLAIN_PATH.fullmatch(path):  # the hot reads: nothing to look up
            return
        for name, value in self._path_params(scope["app"], path).items():
            untrusted.check_text(value, ["path", name], f"path parameter {name!r}")
            if name.endswith("_id") and not _ID.match(value):
                raise InvalidInput(
                    f"path parameter {name!r} is not an id: ids are 1 to 64 letters, "
                    "digits, '_' or '-'",
                    loc=["path", name],
                )
        untrusted.check_text(path, ["path"], "the path")

    def _path_params(self, app: Any, path: str) -> dict[str, str]:
        """The path parameters of the documented operation ``path`` matches (none: no match)."""
        if self._templates is None:
            self._templates = [compile_path(t)[0] for t in app.openapi()["paths"]]
        for template in self._templates:
            match = template.match(path)
            if match is not None:
                return match.groupdict()
        return {}


def _check_query_and_headers(scope: Scope) -> None:
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
