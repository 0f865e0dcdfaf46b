"""Keys: 401 without a valid one; another key's datasets and jobs are invisible (404)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fitq.service import auth
from fitq.service.db.engine import transaction
from fitq.service.db.models import SUCCEEDED, Dataset, Job
from tests.api.conftest import Api, Stored
from tests.conftest import Owner

pytestmark = pytest.mark.anyio

ROUTES = [
    ("GET", "/v1/datasets"),
    ("POST", "/v1/datasets"),
    ("GET", "/v1/datasets/iris"),
    ("DELETE", "/v1/datasets/x"),
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/x"),
    ("GET", "/v1/jobs/x/metrics"),
    ("POST", "/v1/jobs/x/cancel"),
    ("GET", "/v1/jobs/x/model"),
    ("POST", "/v1/jobs/x/predict"),
]


def bad_headers(kind: str, key: str) -> dict[str, str]:
    return {
        "none": {},
        "empty": {"Authorization": ""},
        "basic": {"Authorization": f"Basic {key}"},
        "bearer-only": {"Authorization": "Bearer "},
        "wrong": {"Authorization": "Bearer fitq_not-a-key"},
    }[kind]


class TestWithoutAValidKey:
    @pytest.mark.parametrize(
        "method,path,kind",
        [(m, p, "none") for m, p in ROUTES]
        + [(m, p, "wrong") for m, p in ROUTES]
        + [("GET", "/v1/jobs", kind) for kind in ("empty", "basic", "bearer-only")],
    )
    async def test_every_route_is_401_with_www_authenticate(
        self,
        client: httpx.AsyncClient,
        owner: Owner,
        stored: Callable[[], Stored],
        method: str,
        path: str,
        kind: str,
    ) -> None:
        before = stored()
        r = await client.request(method, path, headers=bad_headers(kind, owner.key))
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert "API key" in r.json()["detail"]
        assert stored() == before

    async def test_a_revoked_key_is_401(
        self, api: Api, database_url: str, make_key: Callable[..., str]
    ) -> None:
        key = make_key("leaving")
        headers = {"Authorization": f"Bearer {key}"}
        assert (await api.get("/v1/jobs", headers=headers)).status_code == 200
        with transaction(database_url) as session:
            auth.revoke_key(session, "leaving")
        assert (await api.get("/v1/jobs", headers=headers)).status_code == 401

    async def test_probes_need_no_key(self, client: httpx.AsyncClient) -> None:
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert (await client.get(path)).status_code == 200, path


class TestAnotherKey:
    @pytest.fixture
    def mine(
        self,
        dataset_factory: Callable[..., Dataset],
        job_factory: Callable[..., Job],
    ) -> dict[str, str]:
        dataset = dataset_factory()
        job = job_factory(status=SUCCEEDED, model_key="jobs/j/model.safetensors")
        return {"dataset": dataset.id, "job": job.id}

    @pytest.mark.parametrize(
        "method,path,body",
        [
            ("GET", "/v1/datasets/{dataset}", None),
            ("DELETE", "/v1/datasets/{dataset}", None),
            ("GET", "/v1/jobs/{job}", None),
            ("GET", "/v1/jobs/{job}/metrics", None),
            ("POST", "/v1/jobs/{job}/cancel", None),
            ("GET", "/v1/jobs/{job}/model", None),
            ("POST", "/v1/jobs/{job}/predict", {"inputs": [[0, 0, 0, 0]]}),
        ],
    )
    async def test_every_route_is_404_as_for_an_unknown_id(
        self,
        client: httpx.AsyncClient,
        make_owner: Callable[..., Owner],
        mine: dict[str, str],
        stored: Callable[[], Stored],
        method: str,
        path: str,
        body: Any,
    ) -> None:
        other = make_owner("other")
        before = stored()
        theirs = await client.request(method, path.format(**mine), headers=other.headers, json=body)
        unknown_ids = {k: "0" * 32 for k in mine}
        unknown = await client.request(
            method, path.format(**unknown_ids), headers=other.headers, json=body
        )
        assert theirs.status_code == unknown.status_code == 404
        assert theirs.json()["detail"] == unknown.json()["detail"].replace(
            "0" * 32, mine["dataset" if "datasets" in path else "job"]
        )
        assert stored() == before

    async def test_lists_show_none_of_the_first_keys_rows(
        self, client: httpx.AsyncClient, make_owner: Callable[..., Owner], mine: dict[str, str]
    ) -> None:
        other = make_owner("other")
        jobs = (await client.get("/v1/jobs", headers=other.headers)).json()
        datasets = (await client.get("/v1/datasets", headers=other.headers)).json()
        assert jobs["items"] == []
        assert all(d["builtin"] for d in datasets["items"])

    async def test_a_job_cannot_name_another_keys_dataset(
        self,
        client: httpx.AsyncClient,
        make_owner: Callable[..., Owner],
        mine: dict[str, str],
        stored: Callable[[], Stored],
    ) -> None:
        other = make_owner("other")
        before = stored()
        body = {
            "model": {
                "input_dim": 4,
                "layers": [{"type": "dense", "units": 3, "activation": "softmax"}],
            },
            "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy"},
            "dataset_id": mine["dataset"],
        }
        r = await client.post("/v1/jobs", headers=other.headers, json=body)
        assert r.status_code == 404
        assert r.json()["loc"] == ["body", "dataset_id"]
        assert "dataset_id" in r.json()["detail"]
        assert stored() == before
