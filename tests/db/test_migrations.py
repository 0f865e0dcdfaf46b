"""The migrations build exactly the schema the models declare, on SQLite and
PostgreSQL, and the newest one goes down and up again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from fitq.service.db import migrate
from fitq.service.db.engine import engine_for
from fitq.service.db.models import Base
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


def test_the_newest_migration_goes_down_and_up(url: str) -> None:
    migrate.upgrade(url)
    head = migrate.head_revision()
    config = migrate.alembic_config(url)
    with engine_for(url).begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "-1")
    assert "sweeps" not in inspect(engine_for(url)).get_table_names()
    migrate.upgrade(url)
    assert migrate.current_revision(url) == head
    assert {"sweeps", "sweep_trials"} <= set(inspect(engine_for(url)).get_table_names())
