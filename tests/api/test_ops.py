"""Start-up checks, probes, metrics, the OpenAPI document, and the last-resort 500."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from fitq.service.api.app import check_schema, create_app
from fitq.service.db.engine import session_factory
from fitq.service.db.models import ApiKey, Job
from fitq.service.settings import Settings

pytestmark = pytest.mark.anyio

BEHIND = "database schema is not up to date; run `fitq db upgrade`"


def asgi_client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fitq.test")


@pytest.fixture
def empty_db_settings(tmp_path: Path) -> Settings:
    """A database with no schema at all: a fresh SQLite file."""
    return Settings(
        home=tmp_path / "h2",
        database_url=f"sqlite:///{tmp_path / 'empty.db'}",
        storage_url=(tmp_path / "s2").as_uri(),
        api_key=None,
    )


class TestStartup:
    async def test_refuses_a_database_behind_head(
        self, empty_db_settings: Settings, anyio_backend: str
    ) -> None:
        app = create_app(empty_db_settings)
        with pytest.raises(RuntimeError, match="fitq db upgrade"):
            async with app.router.lifespan_context(app):
                pass

    def test_check_schema(self, empty_db_settings: Settings, database_url: str) -> None:
        with pytest.raises(RuntimeError) as raised:
            check_schema(empty_db_settings.resolved_database_url)
        assert str(raised.value) == BEHIND
        check_schema(database_url)  # at head: no error

    async def test_registers_the_env_key_once(
        self, settings: Settings, database_url: str, anyio_backend: str
    ) -> None:
        settings = settings.model_copy(update={"api_key": "fitq_from-the-env"})
        for _ in range(2):
            app = create_app(settings)
            async with app.router.lifespan_context(app), asgi_client(app) as client:
                headers = {"Authorization": "Bearer fitq_from-the-env"}
                assert (await client.get("/v1/jobs", headers=headers)).status_code == 200
        with session_factory(database_url)() as session:
            assert session.scalar(select(func.count()).select_from(ApiKey)) == 1


class TestProbes:
    async def test_healthz(self, client: httpx.AsyncClient) -> None:
        r = await client.get("/healthz")
        assert (r.status_code, r.json()) == (200, {"status": "ok"})

    async def test_readyz_when_at_head(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/readyz")).status_code == 200

    async def test_readyz_is_503_on_a_database_behind_head(
        self, empty_db_settings: Settings, anyio_backend: str
    ) -> None:
        async with asgi_client(create_app(empty_db_settings)) as client:
            r = await client.get("/readyz")
            assert r.status_code == 503
            assert r.json()["detail"] == BEHIND
            assert (await client.get("/healthz")).status_code == 200

    async def test_readyz_is_503_when_the_database_is_unreachable(
        self, tmp_path: Path, anyio_backend: str
    ) -> None:
        settings = Settings(
            home=tmp_path / "h3",
            database_url="postgresql://nobody@127.0.0.1:1/none?connect_timeout=1",
            storage_url=(tmp_path / "s3").as_uri(),
        )
        async with asgi_client(create_app(settings)) as client:
            r = await client.get("/readyz")
            assert r.status_code == 503
            assert "unreachable" in r.json()["detail"]
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200, "process metrics still render"
            assert "fitq_http_requests_total" in metrics.text
            assert "fitq_jobs" not in metrics.text


class TestMetrics:
    async def test_requests_by_route_template_and_jobs_by_status(
        self,
        client: httpx.AsyncClient,
        auth_headers: dict[str, str],
        job_factory: Callable[..., Job],
    ) -> None:
        job = job_factory()
        job_factory(status="failed")
        await client.get(f"/v1/jobs/{job.id}", headers=auth_headers)
        await client.get("/v1/jobs/nope", headers=auth_headers)
        text = (await client.get("/metrics")).text
        assert (
            'fitq_http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="200"}' in text
        )
        assert 'route="/v1/jobs/{job_id}",status="404"' in text
        assert job.id not in text
        assert 'fitq_jobs{status="queued"} 1.0' in text
        assert 'fitq_jobs{status="failed"} 1.0' in text
        assert 'fitq_jobs{status="running"} 0.0' in text
        assert "fitq_datasets 0.0" in text

    async def test_unknown_paths_share_one_label(self, client: httpx.AsyncClient) -> None:
        await client.get("/no/such/path/123")
        text = (await client.get("/metrics")).text
        assert 'route="unmatched",status="404"' in text
        assert "/no/such/path" not in text


class TestOpenAPI:
    async def test_declares_the_bearer_scheme_and_the_spec_body(
        self, client: httpx.AsyncClient
    ) -> None:
        doc = (await client.get("/openapi.json")).json()
        schemes = doc["components"]["securitySchemes"]
        assert schemes["HTTPBearer"]["scheme"] == "bearer"
        submit = doc["paths"]["/v1/jobs"]["post"]
        assert submit["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/JobSpec"
        }
        assert "JobSpec" in doc["components"]["schemas"]
        assert {"201", "200", "401", "404", "409", "422"} <= set(submit["responses"])
        upload = doc["paths"]["/v1/datasets"]["post"]
        assert "multipart/form-data" in upload["requestBody"]["content"]
        assert {"201", "401", "413", "422"} <= set(upload["responses"])
        predict = doc["paths"]["/v1/jobs/{job_id}/predict"]["post"]
        assert {"401", "404", "409", "413", "422"} <= set(predict["responses"])


class TestUnexpectedErrors:
    async def test_a_bug_is_a_logged_500_with_a_generic_body(
        self, settings: Settings, caplog: pytest.LogCaptureFixture, anyio_backend: str
    ) -> None:
        app = create_app(settings)  # its own app: this test adds a route

        @app.get("/boom")
        def boom() -> None:
            raise ZeroDivisionError("secret detail")

        async with asgi_client(app) as client:
            r = await client.get("/boom")
            assert r.status_code == 500
            assert r.json() == {"detail": "internal error"}
            assert "secret" not in r.text
            assert (await client.get("/healthz")).status_code == 200
        assert any(rec.exc_info and rec.exc_info[0] is ZeroDivisionError for rec in caplog.records)
