"""The worker process: claim a job, train it with the engine, report back, repeat.

One job at a time. While it trains, a reporter thread extends the lease and
writes progress once a second (``REPORT_SECONDS``), and learns of a cancel
request or of a lost lease; the training loop's step hook acts on those at
the next step boundary. A job's failure never stops the worker.

Idle, it waits on PostgreSQL's ``LISTEN fitq_jobs`` (a dedicated connection,
re-opened when the database comes back) or, on SQLite and as the fallback for
a lost notification, for ``FITQ_POLL_SECONDS``.

Checkpoints (``worker/checkpoints.py``) are written atomically under a key that
carries their sha256, at every epoch end and every ``FITQ_CHECKPOINT_SECONDS``;
a resumed attempt takes the newest sound one. See docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from service import queue
from service.db.engine import is_sqlite, session_factory
from service.errors import StaleAttempt
from service.settings import Settings
from service.store import ArtifactStore
from worker import checkpoints, data

log = logging.getLogger("fitq.worker")

REPORT_SECONDS = 1.0
IDLE_WAKE_SECONDS = 0.5
"""The longest an idle wait goes without looking at the stop flag."""
LISTEN_RETRY_SECONDS = 1.0
"""How soon a lost LISTEN connection is tried again."""
LISTEN_CONNECT_TIMEOUT_SECONDS = 5

TEST_DIE_AT_ENV = "FITQ_TEST_DIE_AT"
TEST_DIE_IN_CHECKPOINT_ENV = "FITQ_TEST_DIE_IN_CHECKPOINT"


class StopRequested(Exception):
    """Raised from the step hook to leave training at a step boundary."""

    def __init__(self, reason: str):
        self.reason = reason  # "shutdown" | "cancel" | "lost"
        super().__init__(reason)


@dataclass
class JobControl:
    """Shared between the training thread and the reporter thread."""

    cancel: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    progress: tuple[int, int, int] | None = None  # (epoch, step, steps)


@dataclass(frozen=True)
class Faults:
    """Test hooks for the fault-injection tests (tests/reliability): the worker
    kills itself with SIGKILL, as ``kill -9`` would, at a chosen point. Never
    set in production. ``fitq worker`` reads them from the environment:

    - ``FITQ_TEST_DIE_AT=<job id>:<epoch>``: at the first step boundary of that
      epoch of that job, on every attempt;
    - ``FITQ_TEST_DIE_IN_CHECKPOINT=<n>``: half-way through writing the bytes
      of this process's n-th checkpoint (1-based).
    """

    die_at: tuple[str, int] | None = None
    die_in_checkpoint: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Faults:
        die_at = None
        if env.get(TEST_DIE_AT_ENV):
            job_id, epoch = env[TEST_DIE_AT_ENV].rsplit(":", 1)
            die_at = (job_id, int(epoch))
        in_checkpoint = env.get(TEST_DIE_IN_CHECKPOINT_ENV)
        return cls(die_at, int(in_checkpoint) if in_checkpoint else None)

    @staticmethod
    def die() -> None:
        log.warning("test hook: dying")
        os.kill(os.getpid(), signal.SIGKILL)


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
        self._dsn = None if is_sqlite(database_url) else _libpq_dsn(database_url)
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
            log.warning("listen failed", extra={"action": "listen", "error": str(exc).strip()})
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
            log.warning("listen connection lost", extra={"action": "listen", "error": str(exc)})
            self.close()
            self._retry_at = time.monotonic() + LISTEN_RETRY_SECONDS
        return False

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):  # already broken
                conn.close()


def _libpq_dsn(database_url: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """Runs jobs from the queue until ``stop`` is set."""

    def __init__(
        self,
        settings: Settings,
        *,
        worker_id: str | None = None,
        stop: threading.Event | None = None,
        store: ArtifactStore | None = None,
        faults: Faults | None = None,
    ):
        self.settings = settings
        self.worker_id = worker_id or default_worker_id()
        self.stop = stop or threading.Event()
        self.store = store or ArtifactStore.from_settings(settings)
        self._sessions = session_factory(settings.resolved_database_url)
        self._device: str | None = None
        self.faults = faults or Faults()
        self._checkpoints_written = 0

    @property
    def device(self) -> str:
        if self._device is None:
            from worker.engine import default_device

            self._device = str(self.settings.device or default_device())
        return self._device

    def _tx(self) -> Any:
        return self._sessions.begin()

    def run(self, max_jobs: int | None = None) -> int:
        """Claim and run jobs until stopped (or ``max_jobs`` ran); return how many ran."""
        ran = 0
        log.info("worker started", extra={"worker_id": self.worker_id, "device": self.device})
        waiter = QueueWaiter(
            self.settings.resolved_database_url, self.settings.poll_seconds, self.stop
        )
        try:
            while not self.stop.is_set() and (max_jobs is None or ran < max_jobs):
                try:
                    claim = self.claim()
                except DBAPIError as exc:  # the database is away: wait, and try again
                    log.warning("claim failed", extra={"action": "claim", "error": str(exc)})
                    self.stop.wait(self.settings.poll_seconds)
                    continue
                if claim is None:
                    waiter.wait()
                    continue
                self.run_job(claim)
                ran += 1
        finally:
            waiter.close()
        log.info("worker stopped", extra={"worker_id": self.worker_id})
        return ran

    def claim(self) -> queue.Claim | None:
        with self._tx() as session:
            return queue.claim(
                session, self.worker_id, self.settings.lease_seconds, device=self.device
            )

    # -- one job -------------------------------------------------------------

    def run_job(self, claim: queue.Claim) -> None:
        fields = {"job_id": claim.job_id, "attempt": claim.attempt, "worker_id": self.worker_id}
        log.info("job started", extra={"action": "start", **fields})
        control = JobControl()
        reporter = threading.Thread(
            target=self._report, args=(claim, control), name="fitq-reporter", daemon=True
        )
        reporter.start()
        try:
            outcome = self._train(claim, control)
        except StaleAttempt:
            outcome = "lost"
        except DBAPIError as exc:  # not the job's fault: leave it to its lease
            outcome = "abandoned"
            log.warning("database error", extra={"action": "abandon", "error": str(exc), **fields})
        except Exception as exc:  # a job's failure must never stop the worker
            outcome = "failed"
            message = describe(exc)
            log.warning(
                "job failed",
                extra={"action": "fail", "error": message, **fields},
                exc_info=not is_expected(exc),
            )
            try:
                self._fenced(claim, lambda s: queue.fail(s, claim.job_id, claim.attempt, message))
            except StaleAttempt:
                outcome = "lost"
            except DBAPIError:
                outcome = "abandoned"
        finally:
            control.done.set()
            reporter.join()
        log.info(f"job {outcome}", extra={"action": outcome, **fields})

    def _train(self, claim: queue.Claim, control: JobControl) -> str:
        from worker.engine import Trainer

        spec = claim.spec
        self._fenced(
            claim, lambda s: queue.record_phase(s, claim.job_id, claim.attempt, "loading_data")
        )
        with self._sessions() as session:
            x, y = data.load_arrays(session, self.store, spec["dataset_id"])
            validation = (
                data.load_arrays(session, self.store, spec["validation_dataset_id"])
                if spec.get("validation_dataset_id")
                else None
            )
            test = (
                data.load_arrays(session, self.store, spec["test_dataset_id"])
                if spec.get("test_dataset_id")
                else None
            )
        resume = checkpoints.load_for_resume(self.store, claim.job_id, claim.checkpoint_key)
        # The last two committed positions are kept; files older than the one
        # before the newest are pruned after each commit.
        committed = [resume[0].position] if resume is not None else []
        trainer = Trainer(
            model=spec["model"],
            compile=spec["compile"],
            fit=spec["fit"],
            seed=spec["seed"],
            device=self.device,
        )
        last_checkpoint = time.monotonic()
        self._fenced(
            claim, lambda s: queue.record_phase(s, claim.job_id, claim.attempt, "training")
        )

        def commit(key: str, write: Callable[[Session], None]) -> None:
            self._fenced(claim, write)
            ref = checkpoints.parse(key)
            assert ref is not None
            committed.append(ref.position)
            del committed[: -checkpoints.KEEP]
            checkpoints.prune(self.store, claim.job_id, keep_from=committed[0])

        def on_step_end(epoch: int, step: int, steps: int) -> None:
            nonlocal last_checkpoint
            control.progress = (epoch, step, steps)
            if self.faults.die_at == (claim.job_id, epoch):
                self.faults.die()
            if control.lost.is_set():
                raise StopRequested("lost")
            if control.cancel.is_set():
                raise StopRequested("cancel")
            if self.stop.is_set():
                raise StopRequested("shutdown")
            if time.monotonic() - last_checkpoint > self.settings.checkpoint_seconds:
                key = self._save_checkpoint(claim, trainer)
                commit(key, lambda s: queue.record_checkpoint(s, claim.job_id, claim.attempt, key))
                last_checkpoint = time.monotonic()

        def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:
            nonlocal last_checkpoint
            key = self._save_checkpoint(claim, trainer)
            metrics = {k: v for k, v in logs.items() if k not in ("seconds", "samples_per_second")}
            with self._tx() as session:  # apart from the fenced write: a stale run shows too
                queue.log_execution(session, claim.job_id, claim.attempt, epoch, self.worker_id)
            commit(
                key,
                lambda s: queue.record_epoch(
                    s,
                    claim.job_id,
                    claim.attempt,
                    epoch=epoch,
                    metrics=metrics,
                    seconds=float(logs.get("seconds", 0.0)),
                    samples_per_second=float(logs.get("samples_per_second", 0.0)),
                    checkpoint_key=key,
                ),
            )
            last_checkpoint = time.monotonic()
            log.info(
                "epoch",
                extra={
                    "action": "epoch",
                    "job_id": claim.job_id,
                    "attempt": claim.attempt,
                    "epoch": epoch,
                },
            )

        try:
            trainer.fit(
                x,
                y,
                validation_data=validation,
                on_step_end=on_step_end,
                on_epoch_end=on_epoch_end,
                resume_from=resume[1] if resume is not None else None,
            )
        except StopRequested as stop:
            return self._stop(claim, trainer, stop.reason, commit)

        if test is not None:
            self._fenced(
                claim, lambda s: queue.record_phase(s, claim.job_id, claim.attempt, "evaluating")
            )
        test_metrics = trainer.evaluate(*test) if test is not None else None
        self._fenced(claim, lambda s: queue.record_phase(s, claim.job_id, claim.attempt, "saving"))
        # One file per attempt: a superseded attempt that wakes up late cannot
        # overwrite the model the job row points to.
        model_key = f"jobs/{claim.job_id}/model-a{claim.attempt}.safetensors"
        self.store.put_bytes(model_key, trainer.export_safetensors({"fitq_spec": _dumps(spec)}))
        self._fenced(
            claim,
            lambda s: queue.finish(
                s, claim.job_id, claim.attempt, model_key=model_key, test_metrics=test_metrics
            ),
        )
        self._drop_checkpoints(claim.job_id)
        return "succeeded"

    def _stop(
        self,
        claim: queue.Claim,
        trainer: Any,
        reason: str,
        commit: Callable[[str, Callable[[Session], None]], None],
    ) -> str:
        if reason == "lost":
            return "lost"
        if reason == "cancel":
            self._fenced(claim, lambda s: queue.acknowledge_cancel(s, claim.job_id, claim.attempt))
            self._drop_checkpoints(claim.job_id)
            return "cancelled"
        key = self._save_checkpoint(claim, trainer)

        def hand_back(session: Session) -> None:
            queue.record_checkpoint(session, claim.job_id, claim.attempt, key)
            queue.requeue(session, claim.job_id, claim.attempt)

        commit(key, hand_back)
        return "handed back"

    def _save_checkpoint(self, claim: queue.Claim, trainer: Any) -> str:
        """Write the trainer's state under a key naming its position (completed
        epochs, steps into the next), this attempt, and the bytes' sha256."""
        data = trainer.checkpoint()
        key = checkpoints.key_for(claim.job_id, trainer.epoch, trainer.step, claim.attempt, data)
        self._checkpoints_written += 1
        if self._checkpoints_written == self.faults.die_in_checkpoint:
            with self.store.writer(key) as f:
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
                self.faults.die()
        self.store.put_bytes(key, data)
        return key

    def _drop_checkpoints(self, job_id: str) -> None:
        """A job that ended needs its checkpoints no more (best effort)."""
        try:
            self.store.delete_prefix(checkpoints.folder(job_id))
        except Exception:
            log.warning("checkpoints not deleted", extra={"job_id": job_id}, exc_info=True)

    def _fenced(self, claim: queue.Claim, write: Callable[[Session], None]) -> None:
        with self._tx() as session:
            write(session)

    # -- the reporter thread ---------------------------------------------------

    def _report(self, claim: queue.Claim, control: JobControl) -> None:
        lease = self.settings.lease_seconds
        interval = min(REPORT_SECONDS, lease / 3)
        last_written: tuple[int, int, int] | None = None
        while not control.done.wait(interval):
            try:
                with self._tx() as session:
                    cancel = queue.heartbeat(session, claim.job_id, claim.attempt, lease)
                    progress = control.progress
                    if progress is not None and progress != last_written:
                        epoch, step, steps = progress
                        queue.record_progress(
                            session,
                            claim.job_id,
                            claim.attempt,
                            epoch=epoch,
                            step=step,
                            steps=steps,
                        )
                        last_written = progress
                if cancel:
                    control.cancel.set()
            except StaleAttempt:
                control.lost.set()
                return
            except Exception:  # the database may be briefly away; keep beating
                log.warning("heartbeat failed", extra={"job_id": claim.job_id}, exc_info=True)


def _dumps(spec: dict[str, Any]) -> str:
    import json

    return json.dumps(spec, sort_keys=True)


def is_expected(exc: BaseException) -> bool:
    from worker.engine import TrainingError

    return isinstance(exc, TrainingError | LookupError | ValueError)


def describe(exc: BaseException) -> str:
    """The message a failed job carries: what went wrong and where."""
    text = str(exc) or type(exc).__name__
    if is_expected(exc):
        return text
    if "out of memory" in text.lower():
        return f"out of memory: {text}"
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {os.path.basename(frame.filename)}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {text}{where}"
