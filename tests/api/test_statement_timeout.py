"""PostgreSQL cancels an API statement that runs past FITQ_STATEMENT_TIMEOUT_SECONDS:
a request stuck behind a lock (or a slow plan) answers 503 with Retry-After
instead of holding its thread and connection for ever. Workers and
migrations keep no limit: a worker's long LISTEN wait is not a statement, and
a migration may rightly take long."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anyio
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from fitq.service.db.engine import engine_for
from fitq.service.settings import Settings
from tests.conftest import Owner

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]
postgres_only = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)

TIMEOUT_SECONDS = 0.5
SLEEP_SECONDS = 30
"""A statement far longer than the timeout: only a cancel ends it soon."""
HANG_SECONDS = 20
"""What a request behind the lock may take before the test calls it a hang."""


def statement_timeout(url: str, seconds: float | None = None) -> str:
    engine = (
        engine_for(url) if seconds is None else engine_for(url, statement_timeout_seconds=seconds)
    )
    with engine.connect() as conn:
        return str(conn.execute(text("SHOW statement_timeout")).scalar())


@postgres_only
class TestEngines:
    def test_the_api_engine_has_the_timeout(self, database_url: str) -> None:
        assert statement_timeout(database_url, 30) == "30s"
        assert statement_timeout(database_url, 0.25) == "250ms"

    def test_workers_and_migrations_have_none(self, database_url: str) -> None:
        """The engine every other process uses (``engine_for(url)``: the worker's
        queue writes, ``fitq db upgrade``, the CLI)."""
        assert statement_timeout(database_url) == "0"

    def test_a_slow_statement_is_cancelled(self, database_url: str) -> None:
        engine = engine_for(database_url, statement_timeout_seconds=TIMEOUT_SECONDS)
        started = time.monotonic()
        with engine.connect() as conn, pytest.raises(OperationalError, match="statement timeout"):
            conn.execute(text("SELECT pg_sleep(:s)"), {"s": SLEEP_SECONDS})
        assert time.monotonic() - started < SLEEP_SECONDS


@postgres_only
class TestRequests:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"statement_timeout_seconds": TIMEOUT_SECONDS})

    @pytest.fixture
    def keys_locked(self, database_url: str, owner: Owner) -> Iterator[None]:
        """Another session holds every key row (what a stuck migration or a
        long ``ALTER TABLE`` would do): any request's key check waits on it."""
        with engine_for(database_url).connect() as conn:
            conn.execute(text("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE"))
            yield
            conn.rollback()

    @pytest.mark.parametrize("path", ["/v1/jobs", "/v1/jobs/" + "0" * 32])
    async def test_a_request_behind_a_lock_is_a_503_not_a_hang(
        self, client: httpx.AsyncClient, owner: Owner, keys_locked: None, path: str
    ) -> None:
        with anyio.fail_after(HANG_SECONDS):  # before: the request waited for the lock for ever
            r = await client.get(path, headers=owner.headers)
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"]
        assert r.json() == {"detail": "database unavailable; retry shortly"}
