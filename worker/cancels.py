"""How a training worker hears a cancel within a step, not a heartbeat.

The heartbeat (``worker/reporter.py``) carries a job's cancel flag too, but only
every ``REPORT_SECONDS``: with short epochs, several would end meanwhile. So
while jobs train, a :class:`CancelListener` thread sets the cancel flag of a
``Reporter`` as soon as the cancel is committed, and the step hook acts on it at
the next step boundary:

- PostgreSQL: a dedicated autocommit connection ``LISTEN``\\s on
  ``queue.CANCEL_CHANNEL`` (``request_cancel`` sends the job's id at commit); the
  flags of its jobs are read once after each (re)connect, since a cancel sent
  before the ``LISTEN`` was not heard. A broken connection is re-opened every
  ``LISTEN_RETRY_SECONDS``; meanwhile the heartbeat still carries the flag.
- SQLite (no NOTIFY): the jobs' ``cancel_requested`` read every
  ``CANCEL_POLL_SECONDS``, one primary-key lookup without the write lock.

The listener lives as long as its :class:`~fitq.worker.reporter.Heartbeat` runs
(a solo job, or a pack), and watches the same reporters.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from fitq.service import queue
from fitq.service.db.availability import describe
from fitq.service.db.engine import engine_for, is_sqlite, reading
from fitq.service.db.models import Job
from fitq.worker.waiter import LISTEN_CONNECT_TIMEOUT_SECONDS, LISTEN_RETRY_SECONDS, libpq_dsn

if TYPE_CHECKING:
    from fitq.worker.reporter import Reporter

log = logging.getLogger("fitq.worker")

CANCEL_POLL_SECONDS = 0.2
"""SQLite: how often the training jobs' cancel flags are read (the worst latency
of a cancel, before the step that acts on it)."""
CANCEL_WAKE_SECONDS = 0.25
"""PostgreSQL: the longest a wait for a notification goes without looking at
whether the listener should end."""


class CancelListener:
    """Sets a watched reporter's ``cancel`` flag as soon as its job's cancel is
    committed. ``reporters()`` gives the ones watched now (they come and go)."""

    def __init__(self, database_url: str, reporters: Callable[[], Sequence[Reporter]]):
        self.url = database_url
        self.reporters = reporters
        self._dsn = None if is_sqlite(database_url) else libpq_dsn(database_url)
        self._conn: Any = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fitq-cancels", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """End the listener. Not joined: on PostgreSQL a wait ends within
        ``CANCEL_WAKE_SECONDS`` and the thread closes its connection itself, so
        the next job need not wait for it."""
        self._done.set()

    def _run(self) -> None:
        try:
            while not self._done.is_set():
                if self._dsn is None:
                    self._poll()
                    self._done.wait(CANCEL_POLL_SECONDS)
                elif self._conn is None:
                    if self._connect():
                        self._poll()  # a cancel committed before the LISTEN
                    else:
                        self._done.wait(LISTEN_RETRY_SECONDS)
                else:
                    self._listen()
        finally:
            self._disconnect()

    def _heard(self, job_ids: set[str]) -> None:
        for reporter in self.reporters():
            if reporter.claim.job_id in job_ids:
                reporter.cancel.set()

    def _poll(self) -> None:
        """The watched jobs whose cancel was asked, read from their rows."""
        ids = [r.claim.job_id for r in self.reporters() if not r.cancel.is_set()]
        if not ids:
            return
        try:
            with reading(engine_for(self.url)) as conn:
                asked = conn.scalars(
                    select(Job.id).where(Job.id.in_(ids), Job.cancel_requested.is_(True))
                )
                self._heard(set(asked))
        except Exception as exc:  # the database away: the next poll (or the heartbeat)
            log.warning("cancel poll failed", extra={"action": "cancels", "error": describe(exc)})

    def _connect(self) -> bool:
        import psycopg

        assert self._dsn is not None
        try:
            conn = psycopg.connect(
                self._dsn, autocommit=True, connect_timeout=LISTEN_CONNECT_TIMEOUT_SECONDS
            )
            conn.execute(f"LISTEN {queue.CANCEL_CHANNEL}")
        except psycopg.Error as exc:
            log.warning("cancel listen failed", extra={"action": "cancels", "error": describe(exc)})
            return False
        self._conn = conn
        return True

    def _listen(self) -> None:
        import psycopg

        try:
            heard = {
                n.payload for n in self._conn.notifies(timeout=CANCEL_WAKE_SECONDS, stop_after=1)
            }
        except psycopg.Error as exc:
            log.warning(
                "cancel listen connection lost", extra={"action": "cancels", "error": describe(exc)}
            )
            self._disconnect()
            self._done.wait(LISTEN_RETRY_SECONDS)
            return
        if heard:
            self._heard(heard)

    def _disconnect(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):  # already broken
                conn.close()
