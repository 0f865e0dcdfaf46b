"""Regression tests for what the OpenAPI fuzzing (test_openapi_fuzz.py) found,
and for what the OpenAPI document must declare so that fuzzing can trust it:
the bearer scheme and 401 on every route that needs a key, links from the
create operations, and only documented status codes."""

from __future__ import annotations

import re
from typing import Any

import anyio
import httpx
import numpy as np
import pytest

from fitq.service.api import sse
from fitq.service.api.guard import ID_PATTERN
from fitq.service.api.openapi import NO_NUL
from fitq.service.paging import CURSOR_PATTERN
from fitq.service.settings import Settings
from tests.conftest import Owner

pytestmark = pytest.mark.anyio

STREAM_SECONDS = 10
"""Bound on a request that must not open an event stream (seconds)."""

PUBLIC = {("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics")}


async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m, p): op for p, ops in doc["paths"].items() for m, op in ops.items()}


class TestDocument:
    async def test_every_keyed_route_declares_the_bearer_scheme_and_401(
        self, client: httpx.AsyncClient
    ) -> None:
        doc = await openapi(client)
        keyed = {k: op for k, op in operations(doc).items() if k not in PUBLIC}
        assert len(keyed) >= 13
        for key, op in keyed.items():
            assert op.get("security") == [{"HTTPBearer": []}], key
            assert "401" in op["responses"], key
        for key in PUBLIC:
            assert "security" not in operations(doc)[key], key

    async def test_create_operations_link_to_every_operation_on_what_they_made(
        self, client: httpx.AsyncClient
    ) -> None:
        doc = await openapi(client)
        ops = operations(doc)
        by_id = {op["operationId"]: (m, p) for (m, p), op in ops.items()}
        expected = {
            ("post", "/v1/datasets", "201"): ("dataset_id", "/v1/datasets/{dataset_id}"),
            ("post", "/v1/jobs", "201"): ("job_id", "/v1/jobs/{job_id}"),
            ("post", "/v1/jobs", "200"): ("job_id", "/v1/jobs/{job_id}"),
        }
        for (method, path, status), (param, prefix) in expected.items():
            links = ops[(method, path)]["responses"][status]["links"]
            targets = {by_id[link["operationId"]] for link in links.values()}
            wanted = {(m, p) for (m, p) in ops if p.startswith(prefix)}
            assert targets == wanted, (method, path, status)
            for link in links.values():
                assert link["parameters"] == {param: "$response.body#/id"}

    async def test_predict_answers_a_body_that_is_not_text_with_a_documented_422(
        self, client: httpx.AsyncClient, owner: Owner
    ) -> None:
        """Found by fuzzing: FastAPI answered a non-UTF-8 JSON body with a 400
        the predict route did not declare. Predict now reads its body as every
        JSON route does (``JsonBody``, after the key): a 422 at ``body``."""
        response = await client.post(
            "/v1/jobs/nope/predict",
            content=b"\xa0 \xd6V",
            headers={**owner.headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 422
        assert response.json()["loc"] == ["body"]
        doc = await openapi(client)
        assert "422" in operations(doc)[("post", "/v1/jobs/{job_id}/predict")]["responses"]


class TestStatedRules:
    """What the API enforces on a request, stated in the document where a schema
    can, so that a request that fits the document is refused only for content
    (docs/reliability.md, "API fuzzing")."""

    async def test_a_job_spec_has_model_or_keras_json(self, client: httpx.AsyncClient) -> None:
        spec = (await openapi(client))["components"]["schemas"]["JobSpec"]
        assert spec["oneOf"] == [{"required": ["model"]}, {"required": ["keras_json"]}]

    async def test_ids_and_cursors_have_their_patterns(self, client: httpx.AsyncClient) -> None:
        params = [
            (path, p)
            for (_, path), op in operations(await openapi(client)).items()
            for p in op.get("parameters", [])
        ]
        ids = [p["schema"] for _, p in params if p["in"] == "path"]
        cursors = [p["schema"]["anyOf"][0] for _, p in params if p["name"] == "cursor"]
        assert len(ids) >= 10 and all(s["pattern"] == ID_PATTERN for s in ids)
        assert len(cursors) >= 2 and all(s["pattern"] == CURSOR_PATTERN for s in cursors)
        strings = [
            branch
            for _, p in params
            if p["in"] != "path" and p["name"] != "cursor"
            for branch in p["schema"].get("anyOf", [p["schema"]])
            if branch.get("type") == "string" and "enum" not in branch
        ]
        assert strings and any(s.get("pattern") == NO_NUL for s in strings)
        own_rule = [s for s in strings if s.get("pattern") != NO_NUL]  # a format or a pattern
        assert all("format" in s or not re.search(s.get("pattern", ""), "\x00") for s in own_rule)

    async def test_last_event_id_is_any_text(self, client: httpx.AsyncClient) -> None:
        """A browser sends back whatever id it saw: the header is text, and a value
        that is no event id is ignored (``TestIntegersPastTheColumns``)."""
        for path in ("/v1/events", "/v1/jobs/{job_id}/events"):
            (header,) = [
                p
                for p in operations(await openapi(client))[("get", path)]["parameters"]
                if p["in"] == "header"
            ]
            assert header["schema"]["anyOf"][0] == {"type": "string", "pattern": NO_NUL}

    async def test_every_operation_may_answer_422_in_either_shape(
        self, client: httpx.AsyncClient
    ) -> None:
        """The guard refuses a NUL or a bad id in any parameter of any route."""
        for key, op in operations(await openapi(client)).items():
            schema = op["responses"]["422"]["content"]["application/json"]["schema"]
            refs = {branch["$ref"].rsplit("/", 1)[1] for branch in schema["anyOf"]}
            assert refs == {"Error", "ValidationErrors"}, key

    async def test_predict_states_its_rows_and_numbers(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        doc = await openapi(client)
        body = operations(doc)[("post", "/v1/jobs/{job_id}/predict")]["requestBody"]
        assert body["content"]["application/json"]["schema"]["$ref"].endswith("/PredictRequest")
        rows = doc["components"]["schemas"]["PredictRequest"]["properties"]["inputs"]
        assert (rows["minItems"], rows["maxItems"]) == (1, settings.max_predict_rows)
        number = rows["items"]["items"]
        assert number["maximum"] == -number["minimum"] == float(np.finfo(np.float32).max)


class TestMethodNotAllowed:
    """Found by fuzzing: a 405's ``Allow`` named only the methods of the first
    route on the path (``OPTIONS /v1/datasets`` said ``Allow: POST``)."""

    @pytest.mark.parametrize(
        "method,path,allowed",
        [
            ("OPTIONS", "/v1/datasets", {"GET", "POST"}),
            ("PUT", "/v1/datasets", {"GET", "POST"}),
            ("PATCH", "/v1/datasets/iris", {"GET", "DELETE"}),
            ("DELETE", "/v1/jobs", {"GET", "POST"}),
            ("GET", "/v1/jobs/x/cancel", {"POST"}),
        ],
    )
    async def test_allow_lists_every_method_of_the_path(
        self, client: httpx.AsyncClient, owner: Owner, method: str, path: str, allowed: set[str]
    ) -> None:
        response = await client.request(method, path, headers=owner.headers)
        assert response.status_code == 405
        assert response.json() == {"detail": "Method Not Allowed"}
        listed = {m.strip() for m in response.headers["allow"].split(",")}
        assert listed - {"HEAD"} == allowed


class TestIntegersPastTheColumns:
    """Found by fuzzing on PostgreSQL: ``?after=2147483648`` and
    ``Last-Event-ID: 2147483648`` reached SQL as INTEGER parameters and
    PostgreSQL refused them ("integer out of range"): a 500, or an event
    stream cut off mid-response. Past the largest INTEGER no epoch or event
    can exist, so such a value is a 422 like any other out-of-range input."""

    TOO_BIG = 2**31

    async def test_metrics_after_past_int32_is_a_422(
        self, client: httpx.AsyncClient, owner: Owner, job_factory: Any
    ) -> None:
        job = job_factory()
        for after in (self.TOO_BIG, 10**30):
            response = await client.get(
                f"/v1/jobs/{job.id}/metrics", params={"after": after}, headers=owner.headers
            )
            assert response.status_code == 422, response.text
        last = await client.get(
            f"/v1/jobs/{job.id}/metrics", params={"after": self.TOO_BIG - 1}, headers=owner.headers
        )
        assert last.status_code == 200
        assert last.json() == {"epochs": []}

    async def test_last_event_id_past_int32_is_ignored(
        self, client: httpx.AsyncClient, owner: Owner, job_factory: Any
    ) -> None:
        """It reached SQL and broke the stream off, then was a 422; a browser
        sends back whatever id it saw, so it is now ignored like any value that
        is no event id: the stream starts from the beginning (here a finished
        job with nothing to send: 204)."""
        job = job_factory(status="succeeded")
        headers = {**owner.headers, "Last-Event-ID": str(self.TOO_BIG)}
        with anyio.fail_after(STREAM_SECONDS):  # before the first fix: a stream that never ends
            response = await client.get(f"/v1/jobs/{job.id}/events", headers=headers)
        assert response.status_code == 204, response.text
        assert sse.resume_after(str(self.TOO_BIG)) is None
        assert sse.resume_after(str(self.TOO_BIG - 1)) == self.TOO_BIG - 1
