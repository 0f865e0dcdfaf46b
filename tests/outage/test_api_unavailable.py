"""The API over a PostgreSQL server that is not there (a port nothing listens
on): each route that needs the database answers 503 with ``Retry-After`` and
a detail naming the database, never 500; the probes that do not need it answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fitq.service.api.app import create_app
from fitq.service.settings import Settings
from tests.conftest import SPEC
from tests.support.processes import free_port

pytestmark = pytest.mark.anyio

JOB = "0" * 32
NEEDS_DATABASE = [
    ("GET", "/readyz"),
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("GET", f"/v1/jobs/{JOB}"),
    ("GET", f"/v1/jobs/{JOB}/metrics"),
    ("GET", f"/v1/jobs/{JOB}/events"),
    ("POST", f"/v1/jobs/{JOB}/cancel"),
    ("GET", "/v1/datasets"),
    ("GET", "/v1/datasets/iris"),
    ("GET", "/v1/events"),
]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose database refuses connections (no lifespan:
    its start-up check would refuse the database, as ``fitq api`` does)."""
    settings = Settings(
        home=tmp_path / "home",
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/fitq",
        storage_url=(tmp_path / "store").as_uri(),
        api_key=None,
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    headers = {"Authorization": "Bearer fitq_not-checked-without-a-database"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://fitq.test", headers=headers
    ) as c:
        yield c


@pytest.mark.parametrize(("method", "path"), NEEDS_DATABASE)
async def test_a_route_that_needs_the_database_answers_503(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json=SPEC if method == "POST" else None)
    assert response.status_code == 503, response.text
    assert "database" in response.json()["detail"]
    assert int(response.headers["retry-after"]) > 0


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
async def test_the_probes_without_the_database_still_answer(
    client: httpx.AsyncClient, path: str
) -> None:
    assert (await client.get(path)).status_code == 200
