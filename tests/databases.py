"""Fresh PostgreSQL databases for the tests and the benchmarks: one next to
the admin URL (``FITQ_TEST_POSTGRES_URL``), dropped on the way out."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import psycopg
import pytest
from sqlalchemy.engine import make_url

from fitq.service.db.engine import engine_for

POSTGRES_ENV = "FITQ_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
CONNECT_TIMEOUT_SECONDS = 3


def admin_url() -> str:
    return os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES_URL)


def libpq_dsn(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://…``) as psycopg's own connect() takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def fresh_postgres_database(admin: str | None = None, prefix: str = "fitq_test") -> Iterator[str]:
    """A new, empty database next to ``admin``'s (default ``admin_url()``), its
    URL yielded; on the way out this process's pool for it is disposed and the
    database dropped. An unreachable server raises ``psycopg.OperationalError``
    before anything is yielded."""
    admin = admin or admin_url()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(
        libpq_dsn(admin), autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        engine_for(url).dispose()
        with psycopg.connect(libpq_dsn(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def postgres_unreachable(exc: Exception) -> NoReturn:
    """A failure under CI (which must run the PostgreSQL tests), a skip elsewhere."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    message = f"PostgreSQL is not reachable ({reason}); set {POSTGRES_ENV}"
    if os.environ.get("CI"):
        pytest.fail(message + " — CI must run the postgres tests", pytrace=False)
    pytest.skip(message)
