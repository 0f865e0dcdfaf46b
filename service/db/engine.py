"""Database engines and sessions for SQLite (embedded) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout, and every transaction begins
IMMEDIATE so that two writers queue up instead of failing half-way: that is
what makes a claim one short write transaction there.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from fitq.service.settings import POOL_SIZE

SQLITE_BUSY_TIMEOUT_SECONDS = 30
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10
"""libpq's ``connect_timeout`` unless the URL sets one: a host that drops packets
is then an error (a 503, a worker's retry) instead of a hang until TCP gives up."""
POOL_MAX_OVERFLOW = 30
"""Connections a process may open past ``settings.POOL_SIZE``, the ones it keeps.
The pool keeps at least as many as the API has threads (``FITQ_API_THREADS`` +
``FITQ_API_READ_THREADS`` ≤ ``POOL_SIZE``, checked by the settings): a request
thread never waits for a connection that only another queued request's thread
could give back (that starvation turned 50 concurrent submissions into pool
time-outs), and a busy API does not open and close a connection per request
past the pool. The overflow is for what runs outside those threads (the event
streams)."""


def normalize_url(url: str) -> str:
    """Route plain ``postgresql://`` URLs to psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_sqlite(url: str) -> bool:
    return make_url(normalize_url(url)).get_backend_name() == "sqlite"


def make_engine(url: str, *, statement_timeout_seconds: float = 0) -> Engine:
    """An engine for ``url``. On PostgreSQL, ``statement_timeout_seconds`` > 0 has
    the server cancel any statement that runs longer (libpq's ``options``, so
    every pooled connection has it from its start); SQLite ignores it."""
    url = normalize_url(url)
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            pool_size=POOL_SIZE,
            max_overflow=POOL_MAX_OVERFLOW,
        )
        _make_sqlite_transactional(engine)
        return engine
    parsed = make_url(url)
    if "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict(
            {"connect_timeout": str(POSTGRES_CONNECT_TIMEOUT_SECONDS)}
        )
    if statement_timeout_seconds > 0:
        own = str(parsed.query.get("options", ""))
        limit = f"-c statement_timeout={max(1, round(statement_timeout_seconds * 1000))}"
        parsed = parsed.update_query_dict({"options": f"{own} {limit}".strip()})
    return create_engine(
        parsed, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_MAX_OVERFLOW
    )


def _make_sqlite_transactional(engine: Engine) -> None:
    """pysqlite's own transaction handling defers BEGIN; take it over (the
    documented SQLAlchemy recipe) so BEGIN IMMEDIATE takes the write lock."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if not connection.get_execution_options().get(NO_BEGIN):
            connection.exec_driver_sql("BEGIN IMMEDIATE")


NO_BEGIN = "fitq_no_begin"
"""Execution option: SQLite statements without an explicit transaction (reads)."""


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for a read route: each statement commits on its own.

    No BEGIN/ROLLBACK round trips on PostgreSQL (autocommit) and no write
    lock on SQLite (``BEGIN IMMEDIATE`` is skipped; WAL readers never block).
    Statements see their own snapshots, so a read made of several statements
    may see a newer row in a later one: fine for a status read.
    """
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            yield connection.execution_options(**{NO_BEGIN: True})
        else:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")


MAX_ENGINES = 8
_engines: OrderedDict[tuple[str, float], Engine] = OrderedDict()
_engines_lock = threading.Lock()


def engine_for(url: str, *, statement_timeout_seconds: float = 0) -> Engine:
    """One engine (and pool) per URL and statement timeout per process: the API
    asks for ``FITQ_STATEMENT_TIMEOUT_SECONDS``, everything else (workers,
    migrations, the CLI) for none. Past ``MAX_ENGINES`` the least recently used
    one is disposed (tests make many databases), which closes its pooled
    connections instead of leaving them to the garbage collector."""
    if is_sqlite(url):
        statement_timeout_seconds = 0
    key = (url, float(statement_timeout_seconds))
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = make_engine(
                url, statement_timeout_seconds=statement_timeout_seconds
            )
        _engines.move_to_end(key)
        while len(_engines) > MAX_ENGINES:
            _, evicted = _engines.popitem(last=False)
            evicted.dispose()
        return engine


def session_factory(url: str, *, statement_timeout_seconds: float = 0) -> sessionmaker[Session]:
    engine = engine_for(url, statement_timeout_seconds=statement_timeout_seconds)
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(url: str) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error."""
    with session_factory(url).begin() as session:
        yield session


_AFTER_COMMIT = "fitq_after_commit"


def after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` once the session's transaction has committed, and never
    if it rolls back: for what must follow durable data and not precede it
    (removing the files of a deleted row)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(action)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for action in session.info.pop(_AFTER_COMMIT, ()):
        action()


@event.listens_for(Session, "after_transaction_end")
def _forget_after_commit(session: Session, transaction: SessionTransaction) -> None:
    """The outermost transaction ended (after the commit ran them, or rolled back): none left."""
    if transaction.parent is None:
        session.info.pop(_AFTER_COMMIT, None)


def rowcount(result: Any) -> int:
    """Rows an UPDATE or DELETE matched (DML results are cursor results)."""
    return cast(CursorResult[Any], result).rowcount
