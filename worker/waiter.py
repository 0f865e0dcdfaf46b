"""How an idle worker waits for work: LISTEN/NOTIFY on PostgreSQL, a poll on SQLite."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from fitq.service import queue
from fitq.service.db.availability import describe
from fitq.service.db.engine import is_sqlite

log = logging.getLogger("fitq.worker")

IDLE_WAKE_SECONDS = 0.5
"""The longest an idle wait goes without looking at the stop flag."""
LISTEN_RETRY_SECONDS = 1.0
"""How soon a lost LISTEN connection is tried again."""
LISTEN_CONNECT_TIMEOUT_SECONDS = 5


class QueueWaiter:
    """How an idle worker waits for work. On PostgreSQL: a dedicated autocommit
    connection that LISTENs on ``queue.NOTIFY_CHANNEL``, so a submission wakes
    the worker at once; notifications that arrive while it trains are kept by
    the connection and wake the next wait. A wait still ends after
    ``poll_seconds`` (a notification lost, a rescue to make: claims poll too).
    A broken connection is re-opened (every ``LISTEN_RETRY_SECONDS`` while the
    database is away), and the first wait on a new one returns at once, since
    notifications sent meanwhile were lost. On SQLite: a plain poll."""

    def __init__(self, database_url: str, poll_seconds: float, stop: threading.Event):
        self.poll_seconds = poll_seconds
        self.stop = stop
        self._dsn = None if is_sqlite(database_url) else libpq_dsn(database_url)
        self._conn: Any = None
        self._retry_at = 0.0

    def wait(self) -> None:
        deadline = time.monotonic() + self.poll_seconds
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            timeout = min(left, IDLE_WAKE_SECONDS)
            if self._dsn is None:
                self.stop.wait(timeout)
                continue
            if self._conn is None:
                if self._connect():
                    return
                self.stop.wait(timeout)
                continue
            if self._notified(timeout):
                return

    def _connect(self) -> bool:
        import psycopg

        if self._dsn is None or time.monotonic() < self._retry_at:
            return False
        try:
            conn = psycopg.connect(
                self._dsn, autocommit=True, connect_timeout=LISTEN_CONNECT_TIMEOUT_SECONDS
            )
            conn.execute(f"LISTEN {queue.NOTIFY_CHANNEL}")
        except psycopg.Error as exc:
            self._retry_at = time.monotonic() + LISTEN_RETRY_SECONDS
            log.warning("listen failed", extra={"action": "listen", "error": describe(exc)})
            return False
        self._conn = conn
        log.info("listening", extra={"action": "listen", "channel": queue.NOTIFY_CHANNEL})
        return True

    def _notified(self, timeout: float) -> bool:
        import psycopg

        try:
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                return True
        except psycopg.Error as exc:
            log.warning(
                "listen connection lost", extra={"action": "listen", "error": describe(exc)}
            )
            self.close()
            self._retry_at = time.monotonic() + LISTEN_RETRY_SECONDS
        return False

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):  # already broken
                conn.close()


def libpq_dsn(database_url: str) -> str:
    """A SQLAlchemy URL as psycopg's own connect() takes it (a LISTEN connection's)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)
