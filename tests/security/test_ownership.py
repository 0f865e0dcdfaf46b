"""Every route, enumerated from ``app.routes`` (a new route is covered without
editing this file): without a key it is a 401 with ``WWW-Authenticate: Bearer``
unless it is a public probe, and with another owner's real ids it is a 404 —
the same 404 as an id that does not exist — never a 403, 200 or 500."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Mount

from fitq.service.db.models import QUEUED, SUCCEEDED, Job
from tests.api.conftest import Stored, csv_bytes
from tests.conftest import SPEC, Owner

pytestmark = pytest.mark.anyio

PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("GET", "/"),  # the dashboard's page; it asks for a key itself
}
PUBLIC_MOUNTS = {"/static"}  # the dashboard's files
KNOWN_PARAMS = {"dataset_id", "job_id", "sweep_id"}
REQUEST_SECONDS = 20
"""Bound on one request: a route that wrongly streams (an event stream) fails, not hangs."""


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str

    @property
    def params(self) -> list[str]:
        return re.findall(r"{(\w+)(?::\w+)?}", self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def endpoints(app: FastAPI) -> Iterator[Endpoint]:
    """Every (method, path) the app serves, included routers flattened."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before included routers kept their own contexts
        routes: list[Any] = list(app.routes)
    else:
        routes = [c.original_route for c in iter_route_contexts(app.routes)]
    for route in routes:
        if isinstance(route, Mount):
            assert route.path in PUBLIC_MOUNTS, f"unknown mount {route.path}: is it public?"
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                yield Endpoint(method, route.path)


async def call(
    client: httpx.AsyncClient, endpoint: Endpoint, ids: dict[str, str], headers: dict[str, str]
) -> httpx.Response:
    body = (
        {"inputs": [[0.0, 0.0, 0.0, 0.0]]} if endpoint.method in ("POST", "PUT", "PATCH") else None
    )
    with anyio.fail_after(REQUEST_SECONDS):
        return await client.request(
            endpoint.method, endpoint.path.format(**ids), headers=headers, json=body
        )


def test_the_enumeration_sees_every_router(app: FastAPI) -> None:
    found = {str(e) for e in endpoints(app)}
    assert {"GET /v1/jobs/{job_id}", "DELETE /v1/datasets/{dataset_id}", "GET /healthz"} <= found
    assert "GET /v1/jobs/{job_id}/events" in found


async def test_every_private_route_is_401_with_www_authenticate(
    app: FastAPI, client: httpx.AsyncClient, owner: Owner
) -> None:
    ids = {"dataset_id": "iris", "job_id": "0" * 32, "sweep_id": "0" * 32}
    checked = []
    for endpoint in endpoints(app):
        if (endpoint.method, endpoint.path) in PUBLIC:
            continue
        unknown = set(endpoint.params) - KNOWN_PARAMS
        assert not unknown, f"{endpoint}: no id to fill {unknown} with"
        for headers in ({}, {"Authorization": "Bearer fitq_wrong"}):
            r = await call(client, endpoint, ids, headers)
            assert r.status_code == 401, f"{endpoint}: {r.status_code} {r.text[:200]}"
            assert r.headers.get("www-authenticate") == "Bearer", str(endpoint)
        checked.append(endpoint)
    assert len(checked) >= 10


@pytest.fixture
async def theirs(
    client: httpx.AsyncClient, owner: Owner, job_factory: Callable[..., Job]
) -> list[dict[str, str]]:
    """The first owner's real ids: an uploaded dataset, a queued job on it, a
    succeeded job, a sweep on the dataset."""
    r = await client.post(
        "/v1/datasets", headers=owner.headers, files={"file": ("mine.csv", csv_bytes(), "text/csv")}
    )
    assert r.status_code == 201, r.text
    dataset_id = r.json()["id"]
    r = await client.post(
        "/v1/jobs", headers=owner.headers, json={**SPEC, "dataset_id": dataset_id}
    )
    assert r.status_code == 201, r.text
    succeeded = job_factory(status=SUCCEEDED, model_key="jobs/x/model.safetensors")
    sweep = await client.post(
        "/v1/sweeps",
        headers=owner.headers,
        json={
            "spec": {**SPEC, "dataset_id": dataset_id},
            "parameters": {"seed": {"values": [0]}},
            "metric": {"name": "loss"},
        },
    )
    assert sweep.status_code == 201, sweep.text
    return [
        {"dataset_id": dataset_id, "job_id": r.json()["id"], "sweep_id": sweep.json()["id"]},
        {"dataset_id": dataset_id, "job_id": succeeded.id, "sweep_id": sweep.json()["id"]},
    ]


async def test_every_route_with_an_id_is_404_for_another_owner(
    app: FastAPI,
    client: httpx.AsyncClient,
    owner: Owner,
    make_owner: Callable[..., Owner],
    theirs: list[dict[str, str]],
    stored: Callable[[], Stored],
) -> None:
    other = make_owner("other")
    before = stored()
    checked = []
    for endpoint in endpoints(app):
        if not endpoint.params:
            continue
        unknown = set(endpoint.params) - KNOWN_PARAMS
        assert not unknown, f"{endpoint}: the test does not know how to fill {unknown}"
        for ids in theirs:
            r = await call(client, endpoint, ids, other.headers)
            absent = await call(client, endpoint, {k: "0" * 32 for k in ids}, other.headers)
            assert r.status_code == 404, f"{endpoint} with their ids: {r.status_code} {r.text}"
            assert absent.status_code == 404, f"{endpoint} with unknown ids: {absent.status_code}"
            [name] = endpoint.params
            assert r.json()["detail"] == absent.json()["detail"].replace("0" * 32, ids[name])
            checked.append(str(endpoint))
    assert len(set(checked)) >= 8, checked
    assert stored() == before
    # The owner still sees everything as it was: nothing was cancelled or deleted.
    for ids in theirs:
        r = await client.get(f"/v1/jobs/{ids['job_id']}", headers=owner.headers)
        assert r.json()["status"] in (QUEUED, SUCCEEDED)
    r = await client.get(f"/v1/datasets/{theirs[0]['dataset_id']}", headers=owner.headers)
    assert r.status_code == 200
