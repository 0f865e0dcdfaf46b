"""The worker process: claim a job, train it with the engine, report back, repeat.

One job at a time. While it trains, a reporter thread extends the lease and
writes progress once a second (``REPORT_SECONDS``), and learns of a cancel
request or of a lost lease; the training loop's step hook acts on those at
the next step boundary. A job's failure never stops the worker.

A database that is away (restarted, its connections terminated) is waited
for: the claim loop polls, the reporter keeps beating, and a job's own writes
are retried with backoff (``RETRY_FIRST_SECONDS`` doubling to
``RETRY_MAX_SECONDS``) until they commit, so an outage shorter than the lease
costs the job neither its attempt nor its progress; a longer one ends in a
fenced write refused (another worker resumed the job from its checkpoint).

Idle, it waits on PostgreSQL's ``LISTEN fitq_jobs`` (a dedicated connection,
re-opened when the database comes back) or, on SQLite and as the fallback for
a lost notification, for ``FITQ_POLL_SECONDS``.

Checkpoints (``worker/checkpoints.py``) are written atomically under a key that
carries their sha256, at every epoch end and every ``FITQ_CHECKPOINT_SECONDS``;
a resumed attempt takes the newest sound one. See docs/reliability.md.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from fitq.service import queue
from fitq.service.db.availability import describe as describe_database_error
from fitq.service.db.availability import is_unavailable
from fitq.service.db.engine import session_factory
from fitq.service.errors import StaleAttempt
from fitq.service.settings import Settings
from fitq.service.store import ArtifactStore
from fitq.worker import checkpoints, data
from fitq.worker.faults import Faults
from fitq.worker.waiter import QueueWaiter

log = logging.getLogger("fitq.worker")
T = TypeVar("T")

REPORT_SECONDS = 1.0
RETRY_FIRST_SECONDS = 0.2
"""The first wait before a job's write is retried while the database is away."""
RETRY_MAX_SECONDS = 2.0
"""The longest wait between two retries (the wait doubles up to it)."""


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
            from fitq.worker.engine import default_device

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
                    log.warning(
                        "claim failed",
                        extra={"action": "claim", "error": describe_database_error(exc)},
                    )
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
        from fitq.worker.engine import Trainer

        spec = claim.spec
        self._fenced(
            claim, lambda s: queue.record_phase(s, claim.job_id, claim.attempt, "loading_data")
        )
        x, y, validation, test = self._retrying("load", lambda: self._load(spec))
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
            if self.faults.step_delay_seconds:
                time.sleep(self.faults.step_delay_seconds)
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
            self._retrying(  # apart from the fenced write: a stale run shows too
                "log_execution",
                lambda: self._in_tx(
                    lambda s: queue.log_execution(
                        s, claim.job_id, claim.attempt, epoch, self.worker_id
                    )
                ),
            )
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

    def _load(self, spec: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
        """The job's arrays: training, and validation and test when it names them."""
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
        return x, y, validation, test

    def _in_tx(self, write: Callable[[Session], None]) -> None:
        with self._tx() as session:
            write(session)

    def _fenced(self, claim: queue.Claim, write: Callable[[Session], None]) -> None:
        """One fenced write in its own transaction, retried while the database is away.

        A retry may follow a commit whose answer was lost with the connection;
        the fenced writes are safe to repeat (the same values again; an epoch's
        History row is written once), and a repeated status change is refused
        as a stale attempt, since the job is no longer running."""
        self._retrying("write", lambda: self._in_tx(write))

    def _retrying(self, action: str, attempt: Callable[[], T]) -> T:
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
            except Exception as exc:  # the database may be briefly away; keep beating
                log.warning(
                    "heartbeat failed",
                    extra={"job_id": claim.job_id, "error": describe_database_error(exc)},
                    exc_info=not is_unavailable(exc),
                )


def _dumps(spec: dict[str, Any]) -> str:
    import json

    return json.dumps(spec, sort_keys=True)


def is_expected(exc: BaseException) -> bool:
    from fitq.worker.engine import TrainingError

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
