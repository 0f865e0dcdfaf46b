"""One commit point per request: the session dependency (``deps.get_session``)
commits once after the route, and nothing else on a request's path commits.
Every route returns its ``Response``, so no wait for FastAPI's thread pool
comes between the route and that commit (``TestIdempotency`` in
``test_jobs.py`` is what starves when one does)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from fastapi import Response
from fastapi.routing import APIRoute

from fitq.service.api.app import ROUTERS

SERVICE = Path(__file__).resolve().parents[2] / "service"
REQUEST_PATH = ["api", "jobs", "datasets", "auth.py", "queue", "paging.py", "store"]


def commits(source: str) -> list[str]:
    """The functions of ``source`` that call ``….commit()``."""
    found = []
    for function in ast.walk(ast.parse(source)):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            calls = [
                node
                for node in ast.walk(function)
                if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "commit"
            ]
            if calls:
                found.append(function.name)
    return found


def test_the_session_dependency_is_the_only_commit_on_a_requests_path() -> None:
    modules = sorted(
        path
        for part in REQUEST_PATH
        for path in ([SERVICE / part] if part.endswith(".py") else (SERVICE / part).rglob("*.py"))
    )
    found = {
        f"{path.relative_to(SERVICE.parent)}:{name}"
        for path in modules
        for name in commits(path.read_text())
    }
    assert found == {"service/api/deps.py:get_session"}


def test_the_check_finds_a_commit() -> None:
    assert commits("def route(session):\n    session.commit()\n") == ["route"]


def test_every_route_returns_its_response() -> None:
    routes = [route for router in ROUTERS for route in router.routes]
    assert routes and all(isinstance(route, APIRoute) for route in routes)
    for route in routes:
        assert isinstance(route, APIRoute)
        returns = inspect.signature(route.endpoint, eval_str=True).return_annotation
        assert isinstance(returns, type) and issubclass(returns, Response), route.path
