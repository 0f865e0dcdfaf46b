"""One claimed attempt of a job: its data loaded, a trainer built and resumed
from the newest sound checkpoint, trained, and ended by one fenced write.

While it trains, the step hook acts at each step boundary on what the
heartbeat learnt (a cancel request, a lost lease), on the worker's shutdown
and on the job's run time (``max_seconds``: ``run_time.py``), and writes a
checkpoint every ``FITQ_CHECKPOINT_SECONDS``; each epoch end writes a
checkpoint with the epoch's History row. The outcomes:

- ``succeeded``: evaluated on the test set when the spec names one, the model
  saved under a key of this attempt, the job finished;
- ``failed``: the job's own error (bad data, divergence, out of memory) is
  written as the job's (no path or URL in it), and the worker goes on;
- ``store unavailable``: the artifact store failed under it (disk full, I/O
  error, unreachable: ``store_errors.py``); the job is handed back from its last
  committed checkpoint and the worker pauses its claims;
- ``cancelled``: a cancel was asked, acknowledged at a step boundary (or at the
  epoch's end, whose History row a committed cancel refuses);
- ``handed back``: shutdown (SIGTERM) requeues the job with a fresh checkpoint;
- ``lost``: the lease went to another worker; nothing more is written;
- ``abandoned``: the database failed in a way that retrying does not cure;
  the job is left to its lease.

Every write goes through the attempt's :class:`~fitq.worker.reporter.Reporter`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DBAPIError

from fitq.service import queue
from fitq.service.errors import StaleAttempt
from fitq.service.settings import Settings
from fitq.service.store import ArtifactStore, keys
from fitq.worker import checkpoints, data, store_errors
from fitq.worker.reporter import Reporter
from fitq.worker.run_time import OverTime, RunTime

log = logging.getLogger("fitq.worker")

StepObserver = Callable[[queue.Claim, int, int], None]
"""Called at every step boundary of an attempt with (claim, epoch, step),
before the stop checks. Production installs none; the fault-injection tests
pause or kill the process here (tests/support/faults.py)."""


class StopRequested(Exception):
    """Raised from the step hook to leave training at a step boundary."""

    def __init__(self, reason: str):
        self.reason = reason  # "shutdown" | "cancel" | "lost"
        super().__init__(reason)


class Attempt:
    """Runs one claimed attempt to its end (:meth:`run`)."""

    def __init__(
        self,
        reporter: Reporter,
        store: ArtifactStore,
        settings: Settings,
        *,
        device: str,
        stop: threading.Event,
        on_step: StepObserver | None = None,
    ):
        self.reporter = reporter
        self.claim = reporter.claim
        self.store = store
        self.settings = settings
        self.device = device
        self.stop = stop
        self.on_step = on_step
        self.trainer: Any = None
        self._trail: checkpoints.Trail | None = None
        self._last_checkpoint = time.monotonic()
        self._run_time: RunTime | None = None

    def run(self) -> str:
        """Train the attempt and return its outcome; a failure of the job is
        written as the job's, never raised."""
        try:
            return self._train()
        except StaleAttempt:
            return "lost"
        except DBAPIError as exc:  # not the job's fault: leave it to its lease
            log.warning(
                "database error", extra={"action": "abandon", "error": str(exc), **self._fields}
            )
            return "abandoned"
        except Exception as exc:  # a job's failure must never stop the worker
            if store_errors.is_outage(exc):  # the store's, not the job's: back to the queue
                return self._store_failed(exc)
            return self._fail(exc)

    @property
    def _fields(self) -> dict[str, Any]:
        return self.reporter.fields

    def _store_failed(self, exc: Exception) -> str:
        return store_failed(self.reporter, exc, self.store)

    def _fail(self, exc: Exception) -> str:
        message = store_errors.scrub(describe(exc), self.store)
        log.warning(
            "job failed",
            extra={"action": "fail", "error": message, **self._fields},
            exc_info=not is_expected(exc),
        )
        try:
            self.reporter.fail(message)
        except StaleAttempt:
            return "lost"
        except DBAPIError:
            return "abandoned"
        return "failed"

    # -- training -------------------------------------------------------------------

    def _train(self) -> str:
        from fitq.worker.engine import Trainer

        spec, claim = self.claim.spec, self.claim
        self.reporter.phase("loading_data")
        arrays = self.reporter.db.retrying("load", lambda: self._load(spec))
        resume = checkpoints.load_for_resume(self.store, claim.job_id, claim.checkpoint_key)
        self._trail = checkpoints.Trail(
            self.store, claim.job_id, resume[0] if resume is not None else None
        )
        self.trainer = Trainer(
            model=spec["model"],
            compile=spec["compile"],
            fit=spec["fit"],
            seed=spec["seed"],
            device=self.device,
        )
        self._last_checkpoint = time.monotonic()
        self._run_time = self.reporter.db.retrying(
            "run time",
            lambda: RunTime.of(self.reporter.db.session, claim.job_id, spec, self.settings),
        )
        self.reporter.phase("training")
        try:
            self.trainer.fit(
                arrays.x,
                arrays.y,
                validation_data=arrays.validation,
                on_step_end=self._on_step_end,
                on_epoch_end=self._on_epoch_end,
                resume_from=resume[1] if resume is not None else None,
            )
        except StopRequested as stop:
            return self._stop(stop.reason)
        except queue.CancelRequested:  # asked after the last step: the epoch was refused
            return self._stop("cancel")
        return self._finish(arrays.test)

    def _load(self, spec: dict[str, Any]) -> data.JobArrays:
        with self.reporter.db.session() as session:
            return data.load_job(session, self.store, spec)

    def _on_step_end(self, epoch: int, step: int, steps: int) -> None:
        self.reporter.progress = (epoch, step, steps)
        if self.on_step is not None:
            self.on_step(self.claim, epoch, step)
        reason = self.reporter.stop_asked() or ("shutdown" if self.stop.is_set() else None)
        if reason is not None:
            raise StopRequested(reason)
        if self._run_time is not None:
            self._run_time.check(epoch, step)  # past max_seconds: the job fails here
        if time.monotonic() - self._last_checkpoint > self.settings.checkpoint_seconds:
            key = self._save_checkpoint()
            self.reporter.checkpoint(key)
            self._committed(key)

    def _on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        key = self._save_checkpoint()
        self.reporter.log_execution(epoch)  # apart from the fenced write: a stale run shows too
        if self.reporter.epoch(epoch, logs, key):
            # a sweep's early termination stopped the trial here: it ends succeeded
            self.trainer.stop_training = True
        self._committed(key)
        log.info("epoch", extra={"action": "epoch", "epoch": epoch, **self._fields})

    # -- checkpoints ----------------------------------------------------------------

    def _save_checkpoint(self) -> str:
        trainer = self.trainer
        position = (trainer.epoch, trainer.step)
        return checkpoints.save(
            self.store, self.claim.job_id, self.claim.attempt, position, trainer.checkpoint()
        )

    def _committed(self, key: str) -> None:
        assert self._trail is not None
        self._trail.committed(key)
        self._last_checkpoint = time.monotonic()

    # -- the end ----------------------------------------------------------------------

    def _stop(self, reason: str) -> str:
        if reason == "lost":
            return "lost"
        if reason == "cancel":
            self.reporter.acknowledge_cancel()
            checkpoints.drop(self.store, self.claim.job_id)
            return "cancelled"
        key = self._save_checkpoint()
        self.reporter.hand_back(key)
        self._committed(key)
        return "handed back"

    def _finish(self, test: tuple[Any, Any] | None) -> str:
        claim = self.claim
        test_metrics = None
        if test is not None:
            self.reporter.phase("evaluating")
            test_metrics = self.trainer.evaluate(*test)
        self.reporter.phase("saving")
        # One file per attempt: a superseded attempt that wakes up late cannot
        # overwrite the model the job row points to.
        model_key = keys.model(claim.job_id, claim.attempt)
        spec_json = json.dumps(claim.spec, sort_keys=True)
        self.store.put_bytes(model_key, self.trainer.export_safetensors({"fitq_spec": spec_json}))
        self.reporter.finish(model_key, test_metrics)
        checkpoints.drop(self.store, claim.job_id)
        return "succeeded"


def store_failed(reporter: Reporter, exc: BaseException, store: ArtifactStore) -> str:
    """The artifact store failed under ``reporter``'s attempt: its job handed back
    (``store_errors.STORE_OUTCOME``), or failed after too many such hand-backs in a
    row; the outcome, as :meth:`Attempt.run` returns it."""
    message = store_errors.describe(exc, store)
    log.warning(
        "artifact store failed",
        extra={"action": "store", "error": message, **reporter.fields},
        exc_info=True,
    )
    try:
        failed = reporter.store_failed(message, store_errors.STORE_FAILURES_MAX)
    except StaleAttempt:
        return "lost"
    except DBAPIError:
        return "abandoned"
    return "failed" if failed else store_errors.STORE_OUTCOME


def is_expected(exc: BaseException) -> bool:
    """A job's own failure (its data, its numbers), logged without a traceback."""
    from fitq.worker.engine import TrainingError

    return isinstance(exc, TrainingError | LookupError | ValueError | OverTime)


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
