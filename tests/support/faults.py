"""Faults the reliability tests install in a worker, through the seams the
worker offers (``Worker(store=…, on_step=…)``, ``runner.serve``): production
passes neither, and reads no test variable.

- ``die_at=(job, epoch)``: SIGKILL, as ``kill -9`` would, at the first step
  boundary of that epoch of that job, on every attempt;
- ``die_in_checkpoint=n``: SIGKILL half-way through writing the bytes of this
  process's n-th checkpoint (1-based), the half fsync'd into the store's
  temporary file;
- ``step_delay_ms``: a pause after every step, so that a tiny test job is
  still running when a test wants to stop it mid-epoch on a fast machine
  (the weights are unaffected);
- ``store_full=n`` (after ``store_full_after`` writes that work): a full disk for
  a while: the store's next n writes (checkpoints, models) fail with ``ENOSPC``,
  then it works again (``FullStore``).

A worker process gets them on its command line (``args()``, read back by
``tests/support/faulty_worker.py``); a worker in the test's own process
takes ``store()`` and ``on_step()`` directly.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fitq.service.settings import Settings
from fitq.service.store import ArtifactStore, storage_options
from fitq.worker import checkpoints

if TYPE_CHECKING:  # the worker's modules load the datasets' (sklearn): not for every test
    from fitq.service import queue
    from fitq.worker.attempt import StepObserver

log = logging.getLogger("fitq.worker")


def die() -> None:
    """SIGKILL this process (no clean-up of any kind, as ``kill -9``)."""
    log.warning("fault: dying")
    os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Faults:
    die_at: tuple[str, int] | None = None
    die_in_checkpoint: int | None = None
    step_delay_ms: float = 0.0
    store_full: int = 0
    store_full_after: int = 0

    def args(self) -> list[str]:
        """The faulty worker's command-line arguments for these faults."""
        args = []
        if self.die_at is not None:
            args += ["--die-at", f"{self.die_at[0]}:{self.die_at[1]}"]
        if self.die_in_checkpoint is not None:
            args += ["--die-in-checkpoint", str(self.die_in_checkpoint)]
        if self.step_delay_ms:
            args += ["--step-delay-ms", f"{self.step_delay_ms:g}"]
        if self.store_full:
            args += ["--store-full", str(self.store_full)]
            args += ["--store-full-after", str(self.store_full_after)]
        return args

    @classmethod
    def parse(cls, argv: Sequence[str]) -> Faults:
        """The faults ``args()`` wrote."""
        parser = argparse.ArgumentParser(prog="python -m tests.support.faulty_worker")
        parser.add_argument("--die-at", metavar="JOB:EPOCH")
        parser.add_argument("--die-in-checkpoint", type=int, metavar="N")
        parser.add_argument("--step-delay-ms", type=float, default=0.0, metavar="MS")
        parser.add_argument("--store-full", type=int, default=0, metavar="N")
        parser.add_argument("--store-full-after", type=int, default=0, metavar="M")
        got = parser.parse_args(list(argv))
        die_at = None
        if got.die_at:
            job_id, epoch = got.die_at.rsplit(":", 1)
            die_at = (job_id, int(epoch))
        return cls(
            die_at, got.die_in_checkpoint, got.step_delay_ms, got.store_full, got.store_full_after
        )

    def on_step(self) -> StepObserver | None:
        """The step observer of these faults (None: none needed)."""
        if self.die_at is None and not self.step_delay_ms:
            return None
        return self._on_step

    def _on_step(self, claim: queue.Claim, epoch: int, step: int) -> None:
        if self.die_at == (claim.job_id, epoch):
            die()
        if self.step_delay_ms:
            time.sleep(self.step_delay_ms / 1000)

    def store(self, settings: Settings) -> ArtifactStore | None:
        """The store of these faults over ``settings``' (None: the plain one)."""
        if self.die_in_checkpoint is None and not self.store_full:
            return None
        url = settings.resolved_storage_url
        options = storage_options(url, s3_endpoint_url=settings.s3_endpoint_url)
        if self.store_full:
            return FullStore(url, writes=self.store_full, after=self.store_full_after, **options)
        assert self.die_in_checkpoint is not None
        return CheckpointKillingStore(url, die_on=self.die_in_checkpoint, **options)


class CheckpointKillingStore(ArtifactStore):
    """An artifact store whose ``die_on``-th checkpoint write (1-based, counted
    in this process) stops half-way: half the bytes written and fsync'd into
    the temporary file, then SIGKILL. Every other write is the store's own."""

    def __init__(self, url: str, *, die_on: int, **options: Any):
        super().__init__(url, **options)
        self.die_on = die_on
        self.checkpoints_written = 0

    def put_bytes(self, key: str, data: bytes) -> None:
        if checkpoints.parse(key) is not None:
            self.checkpoints_written += 1
            if self.checkpoints_written == self.die_on:
                with self.writer(key) as f:
                    f.write(data[: len(data) // 2])
                    f.flush()
                    os.fsync(f.fileno())
                    die()
        super().put_bytes(key, data)


class FullStore(ArtifactStore):
    """An artifact store whose disk is full for a while: after ``after`` writes that
    work, the next ``writes`` fail as a full disk's do (``OSError(ENOSPC)`` naming the
    file's path), then every write works again. Reads are the store's own.
    ``failed_at`` holds when each failure happened (``time.monotonic()``)."""

    def __init__(self, url: str, *, writes: int, after: int = 0, **options: Any):
        super().__init__(url, **options)
        self._good_first, self._failures_left = after, writes
        self._lock = threading.Lock()
        self.failed_at: list[float] = []

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._lock:
            full = self._good_first == 0 and self._failures_left > 0
            if full:
                self._failures_left -= 1
                self.failed_at.append(time.monotonic())
            elif self._good_first > 0:
                self._good_first -= 1
        if full:
            log.warning("fault: store full")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"{self.root}/{key}")
        super().put_bytes(key, data)


def slow_steps(delay_ms: float) -> StepObserver:
    """A step observer that pauses ``delay_ms`` after every step (an in-process worker's)."""
    observer = Faults(step_delay_ms=delay_ms).on_step()
    assert observer is not None
    return observer
