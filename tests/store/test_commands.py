"""``fitq store gc`` (admin: the database and the store directly), and deleting a
job from the client (``Client.delete_job``, ``Job.delete``) and ``fitq delete``,
run in process against the API served on a thread."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import pytest
from click.testing import Result
from fastapi import FastAPI
from typer.testing import CliRunner

from fitq.service.cli.app import app as cli
from fitq.service.client import ApiError, Client
from fitq.service.db.models import RUNNING, SUCCEEDED, Job
from fitq.service.settings import Settings, get_settings
from fitq.service.store import ArtifactStore, keys
from tests.client.in_process import serving
from tests.conftest import Owner


@pytest.fixture
def admin(settings: Settings) -> Iterator[Callable[..., Result]]:
    """``admin(*args)``: ``fitq`` with the test's database and store in its environment."""
    env = {
        "FITQ_DATABASE_URL": settings.resolved_database_url,
        "FITQ_STORAGE_URL": settings.resolved_storage_url,
        "COLUMNS": "200",
    }
    runner = CliRunner()
    get_settings.cache_clear()
    yield lambda *args: runner.invoke(cli, list(args), env=env)
    get_settings.cache_clear()


class TestStoreGc:
    def test_a_dry_run_lists_and_keeps_then_gc_deletes(
        self, admin: Callable[..., Result], store: ArtifactStore
    ) -> None:
        gone = uuid.uuid4().hex
        store.put_bytes(keys.model(gone, 1), b"x" * 2048)
        dry = admin("store", "gc", "--dry-run", "--grace", "0")
        assert dry.exit_code == 0, dry.output
        assert keys.model(gone, 1) in dry.stdout and "would delete 1 objects, 2.0 KiB" in dry.stdout
        assert store.exists(keys.model(gone, 1))
        real = admin("store", "gc", "--grace", "0", "--json")
        assert real.exit_code == 0, real.output
        report = json.loads(real.stdout)
        assert (report["objects"], report["bytes"], report["dry_run"]) == (1, 2048, False)
        assert not store.exists(keys.model(gone, 1))

    def test_the_grace_period_defaults_to_the_setting(
        self, admin: Callable[..., Result], store: ArtifactStore
    ) -> None:
        store.put_bytes(keys.model(uuid.uuid4().hex, 1), b"x")
        result = admin("store", "gc")
        assert result.exit_code == 0, result.output
        assert (
            "deleted 0 objects" in result.stdout and "left 1 younger than 3600 s" in result.stdout
        )


class TestDeleteFromTheClient:
    @pytest.fixture
    def url(self, app: FastAPI) -> Iterator[str]:
        with serving(app) as found:
            yield found

    def test_client_and_job(self, url: str, owner: Owner, job_factory: Callable[..., Job]) -> None:
        first, second = (job_factory(status=SUCCEEDED).id for _ in range(2))
        running = job_factory(status=RUNNING).id
        with Client(url, owner.key) as c:
            c.delete_job(first)
            c.get_job(second).delete()
            with pytest.raises(ApiError, match="cancel it first"):
                c.delete_job(running)
            assert [j["id"] for j in c.jobs()] == [running]

    def test_fitq_delete(self, url: str, owner: Owner, job_factory: Callable[..., Job]) -> None:
        job = job_factory(status=SUCCEEDED).id
        runner = CliRunner()
        done = runner.invoke(cli, ["--url", url, "--api-key", owner.key, "delete", job])
        assert done.exit_code == 0 and f"deleted {job}" in done.stderr, done.output
        again = runner.invoke(cli, ["--url", url, "--api-key", owner.key, "delete", job])
        assert again.exit_code == 1 and "404" in again.stderr
