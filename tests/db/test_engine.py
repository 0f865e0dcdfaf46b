"""``service/db/engine.py``: the per-process engine cache, connection time-outs,
actions after a commit."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from fitq.service.db.engine import (
    MAX_ENGINES,
    POSTGRES_CONNECT_TIMEOUT_SECONDS,
    after_commit,
    engine_for,
    make_engine,
    session_factory,
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


class TestAfterCommit:
    """``after_commit``: an action that must follow durable data, not precede it."""

    def test_runs_once_the_transaction_commits(self, tmp_path: Path) -> None:
        ran: list[str] = []
        with session_factory(f"sqlite:///{tmp_path / 'fitq.db'}")() as session:
            session.execute(text("select 1"))
            after_commit(session, lambda: ran.append("action"))
            assert ran == []
            session.commit()
            assert ran == ["action"]
            session.execute(text("select 1"))
            session.commit()
        assert ran == ["action"]

    def test_is_dropped_with_a_rollback(self, tmp_path: Path) -> None:
        ran: list[str] = []
        with session_factory(f"sqlite:///{tmp_path / 'fitq.db'}")() as session:
            session.execute(text("select 1"))
            after_commit(session, lambda: ran.append("action"))
            session.rollback()
            session.execute(text("select 1"))
            session.commit()
        assert ran == []
