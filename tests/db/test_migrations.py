"""The migrations build exactly the schema the models declare, on SQLite and
PostgreSQL, and the newest one goes down and up again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from fitq.service.db import migrate
from fitq.service.db.engine import engine_for, session_factory
from fitq.service.db.models import Base, Job
from tests.databases import fresh_postgres_database, postgres_unreachable

SQLITE_ONLY_DIFFERENCES = {("add_fk", "jobs", "sweep_id")}
"""Foreign keys a migration leaves out on SQLite, where a column that has one
cannot be dropped in place (each says why in its migration)."""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fitq.db'}"
        return
    try:
        with fresh_postgres_database(prefix="fitq_schema") as fresh:
            yield fresh
    except psycopg.OperationalError as exc:
        postgres_unreachable(exc)


def _differences(url: str) -> list[Any]:
    with engine_for(url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def _key(diff: Any) -> tuple[str, ...]:
    if diff[0] == "add_fk":
        return ("add_fk", diff[1].parent.name, *(c.name for c in diff[1].columns))
    return (str(diff[0]),)


def test_migrations_build_the_models_schema(url: str) -> None:
    migrate.upgrade(url)
    diffs = _differences(url)
    if url.startswith("sqlite"):
        diffs = [d for d in diffs if _key(d) not in SQLITE_ONLY_DIFFERENCES]
    assert diffs == []


def _downgrade_one(url: str) -> None:
    config = migrate.alembic_config(url)
    with engine_for(url).begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "-1")


def _columns(url: str, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine_for(url)).get_columns(table)}


def test_the_newest_migration_goes_down_and_up(url: str) -> None:
    migrate.upgrade(url)
    head = migrate.head_revision()
    _downgrade_one(url)
    assert "job_tags" not in inspect(engine_for(url)).get_table_names()
    assert "tags" not in _columns(url, "jobs") | _columns(url, "sweeps")
    migrate.upgrade(url)
    assert migrate.current_revision(url) == head
    assert "job_tags" in inspect(engine_for(url)).get_table_names()
    assert "tags" in _columns(url, "jobs") and "tags" in _columns(url, "sweeps")


def test_jobs_from_before_tags_have_none(url: str) -> None:
    """0004 on a database with jobs: each reads ``tags == []`` (the column's default)."""
    migrate.upgrade(url)
    _downgrade_one(url)
    now = datetime.now(UTC)
    with engine_for(url).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO api_keys (id, name, key_hash, created_at) VALUES ('k', 'k', 'h', :t)"
            ),
            {"t": now},
        )
        connection.execute(
            text(
                "INSERT INTO jobs (id, owner_id, status, priority, spec, dataset_id, attempt, "
                "max_attempts, cancel_requested, epoch, epochs, step, created_at, updated_at) "
                "VALUES ('j', 'k', 'queued', 0, '{}', 'iris', 0, 3, false, 0, 1, 0, :t, :t)"
            ),
            {"t": now},
        )
    migrate.upgrade(url)
    with session_factory(url)() as session:
        assert session.get(Job, "j").tags == []  # type: ignore[union-attr]
