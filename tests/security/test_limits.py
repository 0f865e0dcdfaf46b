"""Every limit a client can hit: a clear 413/422/429 that names the limit and
its setting (docs/api.md, Limits), and nothing stored by a refused request."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fitq.service.db.models import SUCCEEDED, Job
from fitq.service.settings import Settings
from tests.api.conftest import Api, Stored, Upload, csv_bytes, npz_bytes, parquet_bytes
from tests.conftest import SPEC, Owner

pytestmark = pytest.mark.anyio


def spec(**fit: Any) -> dict[str, Any]:
    body = copy.deepcopy(SPEC)
    body["fit"].update(fit)
    return body


def wide_spec(units: int) -> dict[str, Any]:
    """SPEC with ``units`` hidden units: 4·u + u + u·3 + 3 = 8u + 3 parameters."""
    body = copy.deepcopy(SPEC)
    body["model"]["layers"][0]["units"] = units
    return body


def limited(settings: Settings, **limits: int) -> Settings:
    return settings.model_copy(update=limits)


class TestDefaults:
    def test_every_limit_is_a_setting_with_a_sane_default(self) -> None:
        s = Settings(_env_file=None)  # type: ignore[call-arg]
        assert s.max_upload_bytes == 1024**3
        assert s.max_npz_uncompressed_bytes == 4 * 1024**3
        assert s.max_dataset_cells == 500_000_000
        assert s.max_epochs == 10_000
        assert s.max_parameters == 100_000_000
        assert s.max_predict_rows == 10_000
        assert s.max_queued_jobs_per_key == 1_000
        assert s.max_json_bytes == 16 * 1024**2
        assert s.predict_max_bytes == 256 * 1024**2
        assert (s.max_streams, s.max_streams_per_key) == (100, 10)
        assert s.statement_timeout_seconds == 30
        assert s.max_dataset_bytes == 1024**3
        assert s.max_features == 100_000
        assert s.max_stored_bytes_per_key == 100 * 1024**3
        assert s.max_training_bytes == 16 * 1024**3
        assert s.max_running_jobs_per_key == 64
        assert s.max_job_seconds == 7 * 24 * 3600
        assert (s.max_priority, s.max_attempts) == (100, 10)  # the spec's own bounds

    def test_each_is_read_from_its_environment_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("FITQ_MAX_PARAMETERS", "123")
        monkeypatch.setenv("FITQ_MAX_QUEUED_JOBS_PER_KEY", "7")
        monkeypatch.setenv("FITQ_MAX_NPZ_UNCOMPRESSED_BYTES", "4096")
        s = Settings()
        assert (s.max_parameters, s.max_queued_jobs_per_key) == (123, 7)
        assert s.max_npz_uncompressed_bytes == 4096


# -- upload bytes, counted while the body streams ------------------------------------------


class TestUploadBytes:
    LIMIT = 100_000
    CHUNK = 64 * 1024
    TOTAL_CHUNKS = 64  # 4 MiB offered, far past the limit

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return limited(settings, max_upload_bytes=self.LIMIT)

    async def test_a_chunked_upload_without_content_length_is_cut_at_the_limit(
        self, client: httpx.AsyncClient, owner: Owner, stored: Callable[[], Stored]
    ) -> None:
        boundary = "fitq-test-boundary"
        pulled = 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal pulled
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="big.csv"\r\nContent-Type: text/csv\r\n\r\na,b,label\r\n'
            ).encode()
            pulled += len(head)
            yield head
            row = b"1.0,2.0,0\r\n"
            chunk = row * (self.CHUNK // len(row))
            for _ in range(self.TOTAL_CHUNKS):
                pulled += len(chunk)
                yield chunk
            yield f"\r\n--{boundary}--\r\n".encode()

        before = stored()
        r = await client.post(
            "/v1/datasets",
            content=body(),
            headers={**owner.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert "content-length" not in r.request.headers
        assert r.request.headers["transfer-encoding"] == "chunked"
        assert r.status_code == 413, r.text
        assert f"upload limit of {self.LIMIT} bytes (FITQ_MAX_UPLOAD_BYTES)" in r.json()["detail"]
        # The server stopped reading at the limit: it pulled a chunk past it, not 4 MiB.
        assert pulled <= self.LIMIT + 2 * self.CHUNK
        assert stored() == before

    async def test_a_declared_content_length_over_the_limit_is_refused_upfront(
        self, upload: Upload, stored: Callable[[], Stored]
    ) -> None:
        before = stored()
        r = await upload("big.csv", csv_bytes(n_rows=4000))
        assert r.status_code == 413
        assert "FITQ_MAX_UPLOAD_BYTES" in r.json()["detail"]
        assert stored() == before


# -- rows × features ------------------------------------------------------------------------


class TestDatasetCells:
    LIMIT = 50

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return limited(settings, max_dataset_cells=self.LIMIT)

    @pytest.mark.parametrize(
        ("filename", "content", "cells"),
        [
            ("d.csv", csv_bytes(n_rows=30, n_features=4), 120),
            ("d.tsv", csv_bytes(n_rows=30, n_features=4, sep="\t"), 120),
            ("d.parquet", parquet_bytes(n_rows=30), 60),
            ("d.npz", npz_bytes(), 60),
        ],
    )
    async def test_over_the_limit_is_a_422_naming_it(
        self,
        upload: Upload,
        stored: Callable[[], Stored],
        filename: str,
        content: bytes,
        cells: int,
    ) -> None:
        before = stored()
        r = await upload(filename, content)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert f"{cells} cells" in detail
        assert f"limit {self.LIMIT} (FITQ_MAX_DATASET_CELLS)" in detail
        assert stored() == before

    async def test_at_the_limit_is_accepted(self, upload: Upload) -> None:
        r = await upload("d.csv", csv_bytes(n_rows=10, n_features=4))  # 40 cells
        assert r.status_code == 201, r.text


# -- epochs and parameters, at submit ------------------------------------------------------


class TestSpecLimits:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return limited(settings, max_epochs=5, max_parameters=100)

    async def test_epochs_over_the_limit(self, api: Api, stored: Callable[[], Stored]) -> None:
        before = stored()
        r = await api.post("/v1/jobs", json=spec(epochs=6))
        assert r.status_code == 422
        assert r.json()["loc"] == ["body", "fit", "epochs"]
        assert "must be ≤ 5, the service's limit FITQ_MAX_EPOCHS (got 6)" in r.json()["detail"]
        assert stored() == before
        assert (await api.post("/v1/jobs", json=spec(epochs=5))).status_code == 201

    async def test_parameters_over_the_limit(self, api: Api, stored: Callable[[], Stored]) -> None:
        before = stored()
        r = await api.post("/v1/jobs", json=wide_spec(64))  # 8·64 + 3 = 515 parameters
        assert r.status_code == 422
        assert r.json()["loc"] == ["body", "model", "layers"]
        assert (
            "the model has 515 parameters; the limit is 100 (FITQ_MAX_PARAMETERS)"
            in (r.json()["detail"])
        )
        assert stored() == before
        assert (await api.post("/v1/jobs", json=wide_spec(12))).status_code == 201  # 99

    async def test_a_keras_json_model_is_counted_too(self, api: Api) -> None:
        from tests.spec.conftest import dense, keras_model

        body = {
            "keras_json": keras_model(dense(64, "relu"), dense(3, "softmax")),
            "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy"},
            "fit": {"epochs": 1},
            "dataset_id": "iris",
        }
        r = await api.post("/v1/jobs", json=body)
        assert r.status_code == 422
        assert "515 parameters" in r.json()["detail"]


async def test_the_default_parameter_limit_refuses_a_huge_model(
    api: Api, stored: Callable[[], Stored]
) -> None:
    """Checked from the spec alone: nothing is allocated for a 400M-parameter model."""
    body = copy.deepcopy(SPEC)
    body["model"]["layers"] = [
        {"type": "dense", "units": 20_000, "activation": "relu"},
        {"type": "dense", "units": 20_000, "activation": "relu"},
        {"type": "dense", "units": 3, "activation": "softmax"},
    ]
    before = stored()
    r = await api.post("/v1/jobs", json=body)
    assert r.status_code == 422
    assert "the limit is 100,000,000 (FITQ_MAX_PARAMETERS)" in r.json()["detail"]
    assert stored() == before


# -- predict rows ------------------------------------------------------------------------------


class TestPredictRows:
    LIMIT = 3

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return limited(settings, max_predict_rows=self.LIMIT)

    async def test_over_the_limit_is_a_413_naming_it(
        self, api: Api, job_factory: Callable[..., Job]
    ) -> None:
        job = job_factory(status=SUCCEEDED, model_key="jobs/x/model.safetensors")
        r = await api.post(f"/v1/jobs/{job.id}/predict", json={"inputs": [[0, 0, 0, 0]] * 4})
        assert r.status_code == 413
        assert r.json()["detail"] == (
            "inputs has 4 rows, over the limit of 3 per call (FITQ_MAX_PREDICT_ROWS)"
        )


# -- JSON bodies -----------------------------------------------------------------------------


class CountedBody:
    """A request body of ``chunks`` chunks of ``size`` bytes (a JSON list that
    never closes, sent without Content-Length), counting what the server pulled."""

    def __init__(self, chunks: int, size: int = 64 * 1024):
        self.chunks, self.size, self.pulled = chunks, size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(self.chunks):
            self.pulled += 1
            yield b'{"inputs": [[' if i == 0 else b"0," * (self.size // 2)


JSON_ROUTES = ["/v1/jobs", "/v1/jobs/{job}/predict"]


class TestJsonBodies:
    """Every JSON body is read after the key is checked, and counted while it
    arrives: 413 once it passes FITQ_MAX_JSON_BYTES, never read whole first."""

    LIMIT = 256 * 1024
    CHUNKS = 1024
    """64 MiB offered: what an unchecked read would take in."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return limited(settings, max_json_bytes=self.LIMIT)

    @pytest.fixture
    def job(self, job_factory: Callable[..., Job]) -> Job:
        return job_factory(status=SUCCEEDED, model_key="jobs/x/model.safetensors")

    @pytest.mark.parametrize("path", JSON_ROUTES)
    @pytest.mark.parametrize("key", [None, "fitq_wrong"], ids=["no-key", "wrong-key"])
    async def test_without_a_valid_key_the_body_is_not_read(
        self, client: httpx.AsyncClient, job: Job, path: str, key: str | None
    ) -> None:
        body = CountedBody(self.CHUNKS)
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        r = await client.post(path.format(job=job.id), content=body, headers=headers)
        assert r.status_code == 401, r.text
        assert body.pulled <= 1

    @pytest.mark.parametrize("path", JSON_ROUTES)
    async def test_a_body_past_the_limit_is_cut_as_it_streams(
        self, api: Api, job: Job, path: str
    ) -> None:
        body = CountedBody(self.CHUNKS)
        r = await api.post(
            path.format(job=job.id),
            content=body,
            headers={**api.headers, "Content-Type": "application/json"},
        )
        assert r.status_code == 413, r.text
        assert f"limit of {self.LIMIT} bytes (FITQ_MAX_JSON_BYTES)" in r.json()["detail"]
        assert body.pulled <= self.LIMIT // body.size + 2

    @pytest.mark.parametrize("path", JSON_ROUTES)
    async def test_a_declared_length_past_the_limit_is_refused_unread(
        self, api: Api, job: Job, path: str
    ) -> None:
        r = await api.post(
            path.format(job=job.id),
            content=b"{}",
            headers={
                **api.headers,
                "Content-Type": "application/json",
                "Content-Length": str(self.LIMIT + 1),
            },
        )
        assert r.status_code == 413, r.text

    def test_no_route_lets_fastapi_read_a_body(self, app: FastAPI) -> None:
        """FastAPI reads a declared body before any dependency (the key
        included) and without a cap: every body goes through ``JsonBody`` or
        the upload stream instead."""
        from fastapi.routing import iter_route_contexts

        routes = list(iter_route_contexts(app.routes))
        assert len(routes) >= 15
        assert [r.path for r in routes if getattr(r, "body_field", None) is not None] == []


# -- queued jobs per key -------------------------------------------------------------------------


class TestQueuedJobsPerKey:
    LIMIT = 2

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return limited(settings, max_queued_jobs_per_key=self.LIMIT)

    async def test_a_full_queue_is_a_429_with_retry_after(
        self, api: Api, make_owner: Callable[..., Owner], stored: Callable[[], Stored]
    ) -> None:
        first = await api.post(
            "/v1/jobs", json=spec(), headers={**api.headers, "Idempotency-Key": "a"}
        )
        assert first.status_code == 201
        assert (await api.post("/v1/jobs", json=spec())).status_code == 201
        before = stored()

        r = await api.post("/v1/jobs", json=spec())
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) > 0
        assert r.json()["detail"].startswith(
            f"this key has {self.LIMIT} jobs queued, the limit of {self.LIMIT} "
            "(FITQ_MAX_QUEUED_JOBS_PER_KEY)"
        )
        assert stored() == before

        # A replay is not a new job; another key has its own quota.
        replay = await api.post(
            "/v1/jobs", json=spec(), headers={**api.headers, "Idempotency-Key": "a"}
        )
        assert replay.status_code == 200
        assert replay.json()["id"] == first.json()["id"]
        assert (
            await api.post("/v1/jobs", json=spec(), headers=make_owner().headers)
        ).status_code == 201

        # A cancelled job no longer counts.
        assert (await api.post(f"/v1/jobs/{first.json()['id']}/cancel")).status_code == 202
        assert (await api.post("/v1/jobs", json=spec())).status_code == 201

    async def test_concurrent_submissions_never_overshoot(
        self, api: Api, database_url: str
    ) -> None:
        results = await asyncio.gather(*(api.post("/v1/jobs", json=spec()) for _ in range(6)))
        codes = sorted(r.status_code for r in results)
        assert codes == [201] * self.LIMIT + [429] * (6 - self.LIMIT), [r.text for r in results]
        listed = (await api.get("/v1/jobs", params={"status": "queued"})).json()["items"]
        assert len(listed) == self.LIMIT


def test_429_is_documented_on_submit(app: FastAPI) -> None:
    responses = app.openapi()["paths"]["/v1/jobs"]["post"]["responses"]
    assert "Retry-After" in responses["429"]["description"]
