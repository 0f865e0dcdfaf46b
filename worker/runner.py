"""The worker process: claim a job, run its attempt, repeat, until stopped.

One claim at a time: a job alone (``worker/attempt.py``), or, when it has a
``pack_key`` and packing is on (``FITQ_PACK_MAX`` ≠ 1), a pack of compatible
jobs trained together, which more jobs join as they are queued
(``worker/pack_attempt.py``); ``worker/reporter.py`` writes what each job
does and beats the leases. A job's failure never stops the worker. A
database that is away is waited for: the claim loop polls, the heartbeat
keeps beating, and a job's own writes are retried until they commit (see
``worker/reporter.py``).

The artifact store failing under a job (disk full, unreachable) is not the job's
fault: the job goes back to the queue and the worker pauses its claims, longer
each time it happens again (``worker/store_errors.py``).

Idle, it waits on PostgreSQL's ``LISTEN fitq_jobs`` (a dedicated connection,
re-opened when the database comes back) or, on SQLite and as the fallback for
a lost notification, for ``FITQ_POLL_SECONDS`` (``worker/waiter.py``).

:func:`serve` is ``fitq worker``: SIGTERM or Ctrl-C stops it at the next step
boundary, handing the running job back with a checkpoint; a second Ctrl-C
leaves at once. Checkpoints: ``worker/checkpoints.py``; the whole story:
docs/reliability.md.

Seams: a :class:`Worker` takes its artifact store and an ``on_step``
observer (``worker/attempt.py``: ``StepObserver``). Production passes
neither; the fault-injection tests pass a store that dies mid-write and an
observer that pauses or kills the process (tests/support/faults.py).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from typing import Any

from sqlalchemy.exc import DBAPIError

from fitq.service import queue
from fitq.service.db.availability import describe as describe_database_error
from fitq.service.settings import Settings
from fitq.service.store import ArtifactStore
from fitq.worker import store_errors
from fitq.worker.attempt import Attempt, StepObserver
from fitq.worker.pack_attempt import PackAttempt
from fitq.worker.reporter import Database, Heartbeat, Reporter
from fitq.worker.waiter import QueueWaiter

log = logging.getLogger("fitq.worker")

INTERRUPTED_EXIT_CODE = 130
"""A second Ctrl-C (or SIGTERM) while stopping: leave at once, as a shell's Ctrl-C would."""


def default_worker_id() -> str:
    """``<host>-<pid>-<random>``: unique, and it names the process to look at."""
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
        on_step: StepObserver | None = None,
    ):
        self.settings = settings
        self.worker_id = worker_id or default_worker_id()
        self.stop = stop or threading.Event()
        self.store = store or ArtifactStore.from_settings(settings)
        self.on_step = on_step
        self.db = Database(settings.resolved_database_url, self.stop)
        self._device: str | None = None
        self._backoff = store_errors.Backoff()
        self._pause = 0.0  # seconds without a claim after the last attempt (the store failing)

    @property
    def device(self) -> str:
        if self._device is None:
            from fitq.worker.engine import default_device

            self._device = str(self.settings.device or default_device())
        return self._device

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
                ran += self.run_claim(claim, None if max_jobs is None else max_jobs - ran)
                self._back_off()
        finally:
            waiter.close()
        log.info("worker stopped", extra={"worker_id": self.worker_id})
        return ran

    def claim(self) -> queue.Claim | None:
        with self.db.transaction() as session:
            return queue.claim(
                session,
                self.worker_id,
                self.settings.lease_seconds,
                device=self.device,
                max_running_per_key=self.settings.max_running_jobs_per_key,
            )

    def run_claim(self, claim: queue.Claim, budget: int | None = None) -> int:
        """Run ``claim``'s job, in a pack when it may train in one (then claiming up
        to ``budget`` jobs in all), alone on a retry's last attempt
        (``queue.Claim.isolated``); return how many jobs ran."""
        if claim.pack_key is not None and not claim.isolated and self.settings.pack_max != 1:
            outcomes = list(self.run_pack(claim, budget).values())
        else:
            outcomes = [self.run_job(claim)]
        self._pause = self._backoff.after(outcomes)
        return len(outcomes)

    def _back_off(self) -> None:
        """After the artifact store failed under a job: no claim for a while
        (``store_errors.Backoff``), so that the next job is not failed too."""
        if self._pause > 0:
            log.warning(
                "artifact store failing: pausing claims",
                extra={"action": "back off", "seconds": self._pause, "worker_id": self.worker_id},
            )
            self.stop.wait(self._pause)

    def run_pack(self, claim: queue.Claim, budget: int | None = None) -> dict[str, str]:
        """Train ``claim``'s job in a pack that compatible jobs join; each job's outcome."""
        return PackAttempt(
            claim,
            self.db,
            self.store,
            self.settings,
            worker_id=self.worker_id,
            device=self.device,
            stop=self.stop,
            on_step=self.on_step,
            budget=budget,
        ).run()

    def run_job(self, claim: queue.Claim) -> str:
        """Run ``claim``'s attempt with its heartbeat beating; return the outcome."""
        reporter = Reporter(self.db, claim, self.worker_id)
        log.info("job started", extra={"action": "start", **reporter.fields})
        attempt = Attempt(
            reporter,
            self.store,
            self.settings,
            device=self.device,
            stop=self.stop,
            on_step=self.on_step,
        )
        with Heartbeat(self.db, [reporter], self.settings.lease_seconds).running():
            outcome = attempt.run()
        log.info(f"job {outcome}", extra={"action": outcome, **reporter.fields})
        return outcome


def serve(
    settings: Settings,
    *,
    store: ArtifactStore | None = None,
    on_step: StepObserver | None = None,
) -> None:
    """Run one worker in this process until SIGTERM or Ctrl-C (``fitq worker``):
    logs configured, torch's threads set, the signals turned into ``stop``."""
    from fitq.service import logs

    logs.configure(settings.log_format)
    import torch

    torch.set_num_threads(settings.torch_threads())
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: leave now
            os._exit(INTERRUPTED_EXIT_CODE)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    Worker(settings, stop=stop, store=store, on_step=on_step).run()
