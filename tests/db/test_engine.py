"""The per-process engine cache (``service.db.engine.engine_for``)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from fitq.service.db.engine import (
    MAX_ENGINES,
    POSTGRES_CONNECT_TIMEOUT_SECONDS,
    engine_for,
    make_engine,
)


def test_an_engine_pushed_out_of_the_cache_closes_its_connections(tmp_path: Path) -> None:
    """An engine evicted with pooled connections would leave them to the
    garbage collector: psycopg then warns "deleted while still open" (and a
    PostgreSQL server keeps the session until it notices)."""
    first = engine_for(f"sqlite:///{tmp_path / 'first.db'}")
    with first.connect() as conn:
        conn.execute(text("select 1"))
    assert first.pool.checkedin() == 1  # type: ignore[attr-defined]
    for i in range(MAX_ENGINES):
        engine_for(f"sqlite:///{tmp_path / f'other-{i}.db'}")
    assert first.pool.checkedin() == 0  # type: ignore[attr-defined]


def test_the_same_url_gives_the_same_engine(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fitq.db'}"
    assert engine_for(url) is engine_for(url)


def test_postgresql_connections_give_up_after_a_timeout() -> None:
    """A database host that drops packets (rather than refusing them) must not
    hang a request or a worker until the TCP timeout; the URL's own value wins."""
    default = make_engine("postgresql://fitq@db.invalid/fitq")
    _, options = default.dialect.create_connect_args(default.url)
    assert int(options["connect_timeout"]) == POSTGRES_CONNECT_TIMEOUT_SECONDS
    given = make_engine("postgresql://fitq@db.invalid/fitq?connect_timeout=3")
    _, options = given.dialect.create_connect_args(given.url)
    assert int(options["connect_timeout"]) == 3
