"""Migration 0002 on a database that already holds jobs (SQLite and
PostgreSQL): nothing is lost, the status history is back-filled, and it
goes down and up again."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from fitq.service.db import migrate
from fitq.service.db.engine import engine_for
from fitq.service.db.models import utcnow
from tests.databases import CONNECT_TIMEOUT_SECONDS, DEFAULT_POSTGRES_URL, POSTGRES_ENV


def to(url: str, revision: str, *, down: bool = False) -> None:
    config = migrate.alembic_config(url)
    with engine_for(url).begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    admin = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES_URL)
    dsn = make_url(admin).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"fitq_mig_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS) as c:
            c.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable: {exc}")
        pytest.skip(f"PostgreSQL is not reachable: {exc}")
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    yield url
    engine_for(url).dispose()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def test_0002_keeps_the_rows_backfills_history_and_round_trips(empty_url: str) -> None:
    to(empty_url, "0001")
    now = utcnow()
    with engine_for(empty_url).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO api_keys (id, name, key_hash, created_at) VALUES ('k', 'k', 'h', :t)"
            ),
            {"t": now},
        )
        for job_id, status, error in (("a", "queued", None), ("b", "failed", "boom")):
            conn.execute(
                text(
                    "INSERT INTO jobs (id, owner_id, status, priority, spec, dataset_id, attempt,"
                    " max_attempts, cancel_requested, epoch, epochs, step, error, created_at,"
                    " started_at, finished_at, updated_at) VALUES (:id, 'k', :status, 0, '{}',"
                    " 'iris', :attempt, 3, false, 1, 3, 0, :error, :t, :started, :finished, :t)"
                ),
                {
                    "id": job_id,
                    "status": status,
                    "attempt": 0 if status == "queued" else 2,
                    "error": error,
                    "t": now,
                    "started": None if status == "queued" else now + timedelta(seconds=1),
                    "finished": None if status == "queued" else now + timedelta(seconds=2),
                },
            )
        conn.execute(
            text(
                "INSERT INTO job_epochs (job_id, epoch, attempt, metrics, seconds,"
                " samples_per_second, created_at) VALUES ('b', 1, 2, '{\"loss\": 1}', 1, 1, :t)"
            ),
            {"t": now},
        )

    to(empty_url, "head")
    assert migrate.is_at_head(empty_url)
    with engine_for(empty_url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM job_epochs")).scalar() == 1
        rows = conn.execute(text("SELECT job_id, data FROM job_events ORDER BY id")).all()
        phases = conn.execute(text("SELECT phase FROM jobs")).scalars().all()
    assert phases == [None, None]
    history = [(job_id, _json(data)["status"]) for job_id, data in rows]
    assert history == [("a", "queued"), ("b", "queued"), ("b", "running"), ("b", "failed")]
    assert _json(rows[-1][1])["error"] == "boom"
    with engine_for(empty_url).begin() as conn, pytest.raises(Exception, match="(?i)check"):
        conn.execute(text("UPDATE jobs SET phase = 'dreaming' WHERE id = 'a'"))

    to(empty_url, "0001", down=True)
    columns = {c["name"] for c in inspect(engine_for(empty_url)).get_columns("jobs")}
    assert "phase" not in columns
    assert "job_events" not in inspect(engine_for(empty_url)).get_table_names()
    to(empty_url, "head")
    assert migrate.is_at_head(empty_url)


def _json(value: object) -> dict[str, object]:
    import json

    return value if isinstance(value, dict) else json.loads(str(value))
