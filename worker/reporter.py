"""What a worker tells the queue while an attempt runs, and how it survives a
database that is away.

- :class:`Database`: the worker's transactions. A job's writes are retried
  with backoff (``RETRY_FIRST_SECONDS`` doubling to ``RETRY_MAX_SECONDS``)
  for as long as the database is away, so an outage shorter than the lease
  costs the job neither its attempt nor its progress; past shutdown they are
  not (the lease then hands the job on).
- :class:`Reporter`: the writes of one claimed attempt (phase, epoch,
  checkpoint, finish, fail, cancel acknowledged, hand-back), each fenced by
  the claim's attempt in ``service/queue/``, and what the heartbeat learnt
  for it (``cancel``, ``lost``).
- :class:`Heartbeat`: a thread that, every ``REPORT_SECONDS`` (at most a
  third of the lease), extends the lease of each reporter it beats and writes
  its progress, all in one statement: one reporter for a solo attempt, one per
  member for a pack (``worker/pack_attempt.py``). Beside it, a
  :class:`~fitq.worker.cancels.CancelListener` hears a cancel as soon as it is
  committed (``worker/cancels.py``), so a job stops within a step or so.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from fitq.service import queue
from fitq.service.db.availability import describe as describe_database_error
from fitq.service.db.availability import is_unavailable
from fitq.service.db.engine import session_factory
from fitq.service.errors import StaleAttempt
from fitq.service.sweeps import progress as sweep_progress
from fitq.worker import store_errors

log = logging.getLogger("fitq.worker")
T = TypeVar("T")

REPORT_SECONDS = 1.0
"""How often the heartbeat extends the lease and writes progress (at most a third of the lease)."""
RETRY_FIRST_SECONDS = 0.2
"""The first wait before a job's write is retried while the database is away."""
RETRY_MAX_SECONDS = 2.0
"""The longest wait between two retries (the wait doubles up to it)."""

Progress = tuple[int, int, int]
"""(epoch, step, steps): where training is, as the progress columns hold it."""
Write = Callable[[Session], T]
"""One claim's write, for the caller's transaction."""


class Database:
    """The worker's sessions over one database URL, and the retrying of writes.

    ``stop`` is the worker's: once it is set a write is no longer retried."""

    def __init__(self, url: str, stop: threading.Event):
        self.url = url
        self._sessions = session_factory(url)
        self.stop = stop

    def transaction(self) -> Any:
        """A session in a transaction that commits when the block ends."""
        return self._sessions.begin()

    def session(self) -> Session:
        """A plain session (reads)."""
        return self._sessions()

    def write(self, action: str, write: Callable[[Session], T]) -> T:
        """``write`` in its own transaction, retried while the database is away.

        A retry may follow a commit whose answer was lost with the connection;
        the fenced writes are safe to repeat (the same values again; an epoch's
        History row is written once), and a repeated status change is refused
        as a stale attempt, since the job is no longer running."""
        return self.retrying(action, lambda: self._in_transaction(write))

    def retrying(self, action: str, attempt: Callable[[], T]) -> T:
        """``attempt()``, again with backoff for as long as the database is away
        (not past shutdown: then the lease hands the job on). Any other error,
        a stale attempt included, is raised at once."""
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                return attempt()
            except DBAPIError as exc:
                if not is_unavailable(exc) or self.stop.is_set():
                    raise
                log.warning(
                    "database unavailable; retrying",
                    extra={"action": action, "error": describe_database_error(exc)},
                )
                if self.stop.wait(delay):
                    raise
                delay = min(2 * delay, RETRY_MAX_SECONDS)

    def _in_transaction(self, write: Callable[[Session], T]) -> T:
        with self.transaction() as session:
            return write(session)


Refused = StaleAttempt | queue.CancelRequested
"""Why a claim's write was refused: its attempt is stale, or its job's cancel was asked."""


def write_together(db: Database, action: str, writes: Sequence[Write[T]]) -> list[T | Refused]:
    """Several claims' writes in one transaction, each in its own savepoint (a pack's
    members at a boundary: one commit, not one each). A write refused (a stale
    attempt, an epoch of a job whose cancel was asked) is undone alone and its
    exception stands in its place in the answer; the others commit together.
    Retried as a whole while the database is away."""

    def all_of(session: Session) -> list[T | Refused]:
        done: list[T | Refused] = []
        for write in writes:
            try:
                with session.begin_nested():
                    done.append(write(session))
            except (StaleAttempt, queue.CancelRequested) as exc:
                done.append(exc)
        return done

    return db.write(action, all_of) if writes else []


class Reporter:
    """The writes of one claimed attempt, each fenced by ``claim.attempt``: a
    write of a superseded attempt raises ``StaleAttempt``.

    ``progress`` is set by the training thread at each step and written by the
    heartbeat; ``cancel`` and ``lost`` are set by the heartbeat and read by the
    training thread at the next step boundary."""

    def __init__(self, db: Database, claim: queue.Claim, worker_id: str):
        self.db = db
        self.claim = claim
        self.worker_id = worker_id
        self.cancel = threading.Event()
        self.lost = threading.Event()
        self.progress: Progress | None = None
        self._progress_written: Progress | None = None

    @property
    def fields(self) -> dict[str, Any]:
        """The log fields naming this attempt."""
        claim = self.claim
        return {"job_id": claim.job_id, "attempt": claim.attempt, "worker_id": self.worker_id}

    # -- the fenced writes ------------------------------------------------------
    # Each ``*_write`` is the write for a caller's transaction (a pack writes its
    # members' together: ``write_together``); the plain method commits it alone.

    def phase(self, phase: str) -> None:
        self._commit(self.phase_write(phase))

    def phase_write(self, phase: str) -> Write[None]:
        return self.fenced(lambda s, job, attempt: queue.record_phase(s, job, attempt, phase))

    def checkpoint(self, key: str) -> None:
        """A mid-epoch checkpoint committed: a resumed attempt starts from ``key``."""
        self._commit(self.checkpoint_write(key))

    def checkpoint_write(self, key: str) -> Write[None]:
        return self.fenced(lambda s, job, attempt: queue.record_checkpoint(s, job, attempt, key))

    def epoch(self, epoch: int, logs: dict[str, float], checkpoint_key: str) -> bool:
        """An epoch's History row (its metrics; timings apart) and its checkpoint,
        with the sweep trial's progress in the same transaction. Returns whether
        the job stops at this epoch boundary (a trial that early termination pruned).
        Raises ``queue.CancelRequested`` when the job's cancel was asked (the row
        is not written; the cancel flag is set for the step hook)."""
        return self._commit(self.epoch_write(epoch, logs, checkpoint_key))

    def epoch_write(self, epoch: int, logs: dict[str, float], checkpoint_key: str) -> Write[bool]:
        metrics = {k: v for k, v in logs.items() if k not in ("seconds", "samples_per_second")}

        def write(session: Session, job: str, attempt: int) -> bool:
            queue.record_epoch(
                session,
                job,
                attempt,
                epoch=epoch,
                metrics=metrics,
                seconds=float(logs.get("seconds", 0.0)),
                samples_per_second=float(logs.get("samples_per_second", 0.0)),
                checkpoint_key=checkpoint_key,
            )
            return sweep_progress.after_epoch(session, job, epoch, metrics)

        return self.fenced(write)

    def hand_back(self, checkpoint_key: str | None, *, solo: bool = False) -> None:
        """Back to the queue, resumable from ``checkpoint_key`` (None: from the last
        one committed), in one transaction; ``solo``: never to train in a pack again."""
        self._commit(self.hand_back_write(checkpoint_key, solo=solo))

    def hand_back_write(self, checkpoint_key: str | None, *, solo: bool = False) -> Write[None]:
        def write(session: Session, job: str, attempt: int) -> None:
            if checkpoint_key is not None:
                queue.record_checkpoint(session, job, attempt, checkpoint_key)
            queue.requeue(session, job, attempt, solo=solo)

        return self.fenced(write)

    def store_failed(self, message: str, limit: int) -> bool:
        """The artifact store failed under this attempt (``message``, no path in it):
        the job goes back to the queue from its last committed checkpoint, or, when
        it went back for the store ``limit`` − 1 times in a row already, fails with
        the reason. One transaction; returns whether the job failed."""

        def write(session: Session, job: str, attempt: int) -> bool:
            failures = queue.store_failures(session, job) + 1
            if failures >= limit:
                queue.fail(
                    session, job, attempt, f"{message} ({failures} times in a row; given up)"
                )
                return True
            queue.requeue(session, job, attempt, store_error=message)
            return False

        return self._commit(self.fenced(write))

    def acknowledge_cancel(self) -> None:
        self._commit(self.fenced(queue.acknowledge_cancel))

    def finish(self, model_key: str, test_metrics: dict[str, float] | None) -> None:
        self._commit(self.finish_write(model_key, test_metrics))

    def finish_write(self, model_key: str, test_metrics: dict[str, float] | None) -> Write[None]:
        return self.fenced(
            lambda s, job, attempt: queue.finish(
                s, job, attempt, model_key=model_key, test_metrics=test_metrics
            )
        )

    def fail(self, message: str) -> None:
        """The job failed with ``message`` (cleared of any path or URL: ``store_errors.scrub``)."""
        message = store_errors.scrub(message)
        self._commit(self.fenced(lambda s, job, attempt: queue.fail(s, job, attempt, message)))

    def log_execution(self, epoch: int) -> None:
        """The execution log's row for ``epoch`` run by this attempt. Not fenced:
        a stale attempt's run shows too."""
        self.db.write("log_execution", self.log_execution_write(epoch))

    def log_execution_write(self, epoch: int) -> Write[None]:
        job, attempt = self.claim.job_id, self.claim.attempt
        return lambda s: queue.log_execution(s, job, attempt, epoch, self.worker_id)

    def fenced(self, write: Callable[[Session, str, int], T]) -> Write[T]:
        """``write`` with this claim's job and attempt (the fence ``service/queue/`` checks)."""
        job, attempt = self.claim.job_id, self.claim.attempt
        return lambda session: write(session, job, attempt)

    def _commit(self, write: Write[T]) -> T:
        """One write in its own transaction, retried while the database is away."""
        try:
            return self.db.write("write", write)
        except queue.CancelRequested:
            self.cancel.set()
            raise

    # -- the heartbeat's part -----------------------------------------------------

    def stop_asked(self) -> str | None:
        """What the heartbeat learnt that ends the attempt at its next step
        boundary: ``"lost"`` (the lease went to another worker), ``"cancel"``."""
        if self.lost.is_set():
            return "lost"
        if self.cancel.is_set():
            return "cancel"
        return None

    def beat(self) -> queue.Beat:
        """This claim's part of the next heartbeat: its progress if it moved."""
        progress = self.progress
        return queue.Beat(self.claim, None if progress == self._progress_written else progress)

    def beaten(self, beat: queue.Beat, heard: dict[str, bool]) -> None:
        """The heartbeat committed ``beat`` and ``heard`` what it answered: this
        attempt is lost when it is not in the answer; else its progress is written
        and its cancel request, if any, heard."""
        cancel = heard.get(self.claim.job_id)
        if cancel is None:
            self.lost.set()
            return
        if beat.progress is not None:
            self._progress_written = beat.progress
        if cancel:
            self.cancel.set()


class Heartbeat:
    """The thread that beats its reporters until the block ends: one statement a
    tick (``queue.heartbeat_claims``) extends every lease and writes every
    progress that moved. A reporter whose attempt is no longer the running one
    (its lease went to another worker, or it ended) is marked lost and beaten no
    more; the others lose nothing. Reporters join (:meth:`add`) and leave
    (:meth:`discard`) while it runs: a pack's members come and go. Any other
    error (the database briefly away) is logged and the next tick tries again."""

    def __init__(self, db: Database, reporters: list[Reporter], lease_seconds: float):
        self.db = db
        self.lease_seconds = lease_seconds
        self._reporters = list(reporters)
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fitq-reporter", daemon=True)

    @contextmanager
    def running(self) -> Iterator[Heartbeat]:
        """Beating, and hearing cancels (``worker/cancels.py``), until the block ends."""
        from fitq.worker.cancels import CancelListener

        cancels = CancelListener(self.db.url, self.watched)
        self._thread.start()
        cancels.start()
        try:
            yield self
        finally:
            cancels.close()
            self._done.set()
            self._thread.join()

    def watched(self) -> list[Reporter]:
        """The reporters beaten now."""
        with self._lock:
            return list(self._reporters)

    def add(self, reporter: Reporter) -> None:
        with self._lock:
            self._reporters.append(reporter)

    def discard(self, reporter: Reporter) -> None:
        """Beat ``reporter`` no more (its attempt ended, or left this worker)."""
        with self._lock:
            if reporter in self._reporters:
                self._reporters.remove(reporter)

    def _run(self) -> None:
        interval = min(REPORT_SECONDS, self.lease_seconds / 3)
        while not self._done.wait(interval):
            with self._lock:
                live = [r for r in self._reporters if not r.lost.is_set()]
            if live:
                self._tick(live)

    def _tick(self, live: list[Reporter]) -> None:
        beats = [r.beat() for r in live]
        try:
            with self.db.transaction() as session:
                heard = queue.heartbeat_claims(session, beats, self.lease_seconds)
        except Exception as exc:  # the database may be briefly away; keep beating
            log.warning(
                "heartbeat failed",
                extra={
                    "job_id": ",".join(r.claim.job_id for r in live),
                    "error": describe_database_error(exc),
                },
                exc_info=not is_unavailable(exc),
            )
            return
        for reporter, beat in zip(live, beats, strict=True):
            reporter.beaten(beat, heard)
