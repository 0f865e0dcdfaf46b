"""Never a 500 for what a client sends: text neither database can hold (a NUL,
a lone surrogate), numbers Python cannot read (an integer of 5,000 digits,
NaN), a cursor with a date but no time zone. Each is a 422 whose ``loc`` names
the field, on SQLite and PostgreSQL, before or after the key is checked, and
nothing is stored."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.api.conftest import Api, Stored, csv_bytes
from tests.conftest import SPEC

pytestmark = pytest.mark.anyio

JSON = {"Content-Type": "application/json"}
WRONG_KEY = {"Authorization": "Bearer fitq_not-a-key"}


def spec_text(**top: str) -> str:
    """The test spec as JSON text, with top-level keys set to raw JSON."""
    text = json.dumps(SPEC)[:-1]
    return text + "".join(f", {json.dumps(k)}: {v}" for k, v in top.items()) + "}"


def cursor(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


async def refused(response: httpx.Response, loc: list[str | int], status: int = 422) -> None:
    assert response.status_code == status, response.text
    assert response.json()["loc"] == loc, response.text


class TestJsonBodies:
    @pytest.mark.parametrize(
        "field,raw,loc",
        [
            ("dataset_id", r'"\ud800"', ["body", "dataset_id"]),
            ("name", r'"a\udfffb"', ["body", "name"]),
            ("dataset_id", r'"a\u0000b"', ["body", "dataset_id"]),
            ("name", r'"a\u0000"', ["body", "name"]),
            ("seed", "9" * 5000, ["body", "seed"]),
            ("seed", "NaN", ["body", "seed"]),
            ("seed", "-Infinity", ["body", "seed"]),
            ("seed", "1e999", ["body", "seed"]),
        ],
    )
    async def test_submit_refuses_it_naming_the_field(
        self, api: Api, stored: Callable[[], Stored], field: str, raw: str, loc: list[str]
    ) -> None:
        before = stored()
        r = await api.post(
            "/v1/jobs", content=spec_text(**{field: raw}), headers={**api.headers, **JSON}
        )
        await refused(r, loc)
        assert field in r.json()["detail"]
        assert stored() == before

    async def test_a_key_of_an_object_is_text_too(self, api: Api) -> None:
        body = json.dumps(SPEC)[:-1] + r', "fit": {"epochs": 1, "x\u0000": 1}}'
        r = await api.post("/v1/jobs", content=body, headers={**api.headers, **JSON})
        await refused(r, ["body", "fit"])

    async def test_deep_inside_a_list(self, api: Api) -> None:
        body = json.dumps(SPEC).replace('"relu"', r'"re\u0000lu"', 1)
        r = await api.post("/v1/jobs", content=body, headers={**api.headers, **JSON})
        await refused(r, ["body", "model", "layers", 0, "activation"])
        assert "model.layers[0].activation" in r.json()["detail"]

    async def test_an_escaped_backslash_before_u0000_is_plain_text(self, api: Api) -> None:
        body = spec_text(name=r'"C:\\u0000dir"')
        r = await api.post("/v1/jobs", content=body, headers={**api.headers, **JSON})
        assert r.status_code == 201, r.text
        assert r.json()["name"] == "C:\\u0000dir"


class TestUrlsAndHeaders:
    """A NUL reaches no SQL from a path, a query or a header: refused before
    routing, so before the key is checked too (a wrong key gets the same 422)."""

    @pytest.mark.parametrize("headers", [None, WRONG_KEY], ids=["key", "wrong-key"])
    @pytest.mark.parametrize(
        "method,path,loc",
        [
            ("GET", "/v1/jobs/a%00b", ["path", "job_id"]),
            ("GET", "/v1/jobs/a%00b/metrics", ["path", "job_id"]),
            ("GET", "/v1/jobs/a%00b/events", ["path", "job_id"]),
            ("POST", "/v1/jobs/a%00b/cancel", ["path", "job_id"]),
            ("POST", "/v1/jobs/a%00b/predict", ["path", "job_id"]),
            ("GET", "/v1/datasets/a%00b", ["path", "dataset_id"]),
            ("DELETE", "/v1/datasets/a%00b", ["path", "dataset_id"]),
            ("GET", "/v1/jobs?status=a%00", ["query", "status"]),
            ("GET", "/v1/jobs?cursor=%00", ["query", "cursor"]),
        ],
    )
    async def test_a_nul_is_refused_naming_where(
        self, api: Api, headers: dict[str, str] | None, method: str, path: str, loc: list[str]
    ) -> None:
        r = await api.client.request(method, path, headers=headers or api.headers)
        await refused(r, loc)

    @pytest.mark.parametrize("headers", [None, WRONG_KEY], ids=["key", "wrong-key"])
    @pytest.mark.parametrize(
        "path,loc",
        [
            ("/v1/jobs/not%20an%20id", ["path", "job_id"]),
            ("/v1/jobs/" + "a" * 65, ["path", "job_id"]),
            ("/v1/jobs/%C3%A9t%C3%A9/metrics", ["path", "job_id"]),
            ("/v1/datasets/..%5C..%5Cetc", ["path", "dataset_id"]),
        ],
    )
    async def test_a_path_id_outside_the_id_alphabet_is_refused(
        self, api: Api, headers: dict[str, str] | None, path: str, loc: list[str]
    ) -> None:
        """Ids are what fitq makes (a uuid's hex, a built-in's name): the pattern
        the OpenAPI document states, checked before any SQL."""
        await refused(await api.get(path, headers=headers or api.headers), loc)

    async def test_ids_fitq_makes_pass(self, api: Api) -> None:
        assert (await api.get("/v1/datasets/breast_cancer")).status_code == 200
        assert (await api.get("/v1/jobs/" + "f" * 32)).status_code == 404

    async def test_in_an_idempotency_key(self, api: Api, stored: Callable[[], Stored]) -> None:
        before = stored()
        r = await api.post(
            "/v1/jobs", json=SPEC, headers={**api.headers, "Idempotency-Key": "a\x00b"}
        )
        await refused(r, ["header", "idempotency-key"])
        assert stored() == before


class TestCursors:
    @pytest.mark.parametrize(
        "path,data",
        [
            ("/v1/jobs", {"j": ["2024-01-01T00:00:00", "abc"]}),
            ("/v1/datasets", {"u": ["2024-01-01T00:00:00", "abc"]}),
            ("/v1/jobs", {"j": ["0001-01-01T00:00:00+14:00", "abc"]}),
            ("/v1/jobs", {"j": ["2024-01-01T00:00:00+00:00", "a\x00b"]}),
            ("/v1/jobs", {"j": ["2024-01-01T00:00:00+00:00", ["not", "an", "id"]]}),
            ("/v1/jobs", {"j": ["2024-01-01T00:00:00+00:00", "9" * 5000]}),
        ],
        ids=["naive-date", "naive-date-datasets", "before-year-1", "nul-id", "list-id", "long"],
    )
    async def test_a_cursor_the_api_did_not_make_is_a_422(
        self, api: Api, path: str, data: Any
    ) -> None:
        r = await api.get(path, params={"cursor": cursor(data)})
        await refused(r, ["query", "cursor"])

    async def test_a_cursor_outside_its_alphabet_is_a_422(self, api: Api) -> None:
        good = cursor({"j": ["2024-01-01T00:00:00+00:00", "abc"]})
        assert (await api.get("/v1/jobs", params={"cursor": good})).status_code == 200
        r = await api.get("/v1/jobs", params={"cursor": good[:4] + "!" + good[4:]})
        await refused(r, ["query", "cursor"])


class TestUploads:
    @pytest.mark.parametrize("field", ["name", "label", "task"])
    async def test_a_nul_in_a_text_field(
        self, api: Api, stored: Callable[[], Stored], field: str
    ) -> None:
        before = stored()
        r = await api.post(
            "/v1/datasets",
            files={"file": ("d.csv", csv_bytes(), "text/csv")},
            data={field: "a\x00b"},
        )
        await refused(r, ["body", field])
        assert stored() == before

    async def test_a_nul_in_the_file_name(self, api: Api, stored: Callable[[], Stored]) -> None:
        before = stored()
        body = (
            b'--B\r\nContent-Disposition: form-data; name="file"; filename="a\x00.csv"\r\n\r\n'
            + csv_bytes()
            + b"\r\n--B--\r\n"
        )
        headers = {**api.headers, "Content-Type": "multipart/form-data; boundary=B"}
        r = await api.post("/v1/datasets", content=body, headers=headers)
        await refused(r, ["body", "file"])
        assert stored() == before
