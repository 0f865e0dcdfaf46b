"""The jobs of a pack as the worker holds them (``worker/pack_attempt.py``): each
member's reporter and checkpoint trail, and what the members do together.

- Writes together: a boundary's checkpoint files go side by side on ``IO_THREADS``
  (each waits on its fsync, not the CPU), and its rows in one transaction, each
  member's fenced write in its own savepoint (``reporter.write_together``): a pack pays
  for a boundary about what one job pays for an epoch, and a member whose write is
  refused as stale leaves alone.
- Leaving: whatever ends a member ends it as it ends a solo attempt (``Attempt.run``):
  a stale write → ``lost`` (nothing more written), a database error that retrying does
  not cure → ``abandoned`` to its lease, the artifact store failing → handed back
  (``store unavailable``, ``worker/store_errors.py``), any other error → the job
  ``failed`` with it;
  or ``handed back``, ``cancelled``, ``succeeded`` by the pack. It leaves the pack, the
  heartbeat and :attr:`Members.jobs` at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

from fitq.service import queue
from fitq.service.errors import StaleAttempt
from fitq.service.store import ArtifactStore
from fitq.worker import checkpoints, data, store_errors
from fitq.worker.attempt import describe, is_expected, store_failed
from fitq.worker.reporter import Database, Heartbeat, Reporter, Write, write_together
from fitq.worker.run_time import RunTime

log = logging.getLogger("fitq.worker")
T = TypeVar("T")

IO_THREADS = 8
"""Store writes of one boundary running side by side (each waits on its fsync)."""


@dataclass(eq=False)
class PackedJob:
    """One member's job: its claim's reporter, its checkpoints, its test set."""

    reporter: Reporter
    trail: checkpoints.Trail
    test: data.Arrays | None = None
    seen: tuple[int, int] = (-1, -1)  # (epochs done, step) the step observer last saw
    run_time: RunTime | None = None  # max_seconds (worker/run_time.py), read as it joins

    @property
    def claim(self) -> queue.Claim:
        return self.reporter.claim

    @property
    def job_id(self) -> str:
        return self.reporter.claim.job_id


class Members:
    """A pack's jobs (:attr:`jobs`, in the order they joined) and their outcomes."""

    def __init__(
        self,
        pack: Any,
        db: Database,
        store: ArtifactStore,
        heartbeat: Heartbeat,
        io: ThreadPoolExecutor,
    ):
        self.pack, self.db, self.store, self.heartbeat, self.io = pack, db, store, heartbeat, io
        self.jobs: dict[str, PackedJob] = {}
        self.outcomes: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def __iter__(self) -> Iterator[PackedJob]:
        return iter(list(self.jobs.values()))

    def join(self, claim: queue.Claim, worker_id: str) -> PackedJob:
        """A claimed job becomes a member (not yet in the pack: ``Pack.add`` follows)."""
        stale = self.jobs.get(claim.job_id)
        if stale is not None:  # our own lease ran out and we claimed it again
            self.end(stale, "lost")
        reporter = Reporter(self.db, claim, worker_id)
        self.heartbeat.add(reporter)
        job = PackedJob(reporter, checkpoints.Trail(self.store, claim.job_id, None))
        self.jobs[claim.job_id] = job
        return job

    def save_all(self, jobs: list[PackedJob]) -> list[tuple[PackedJob, str]]:
        """Each member's checkpoint where it stands, the files written side by side;
        (member, key) for those saved (a member whose save failed has failed)."""
        blobs: dict[PackedJob, tuple[tuple[int, int], bytes]] = {}
        for job in jobs:
            with self.guard(job):
                epochs, step, _steps = self.pack.progress(job.job_id)
                blobs[job] = ((epochs, step), self.pack.checkpoint(job.job_id))

        def save(job: PackedJob) -> str:
            position, blob = blobs[job]
            return checkpoints.save(self.store, job.job_id, job.claim.attempt, position, blob)

        return self.each(list(blobs), save)

    def commit_trails(self, saved: list[tuple[PackedJob, str]]) -> None:
        """Committed keys: each member's older files pruned (side by side)."""
        key_of = dict(saved)
        self.each([job for job, _ in saved], lambda job: job.trail.committed(key_of[job]))

    def each(
        self, jobs: list[PackedJob], io: Callable[[PackedJob], T]
    ) -> list[tuple[PackedJob, T]]:
        """``io(job)`` for every member on the I/O threads; (member, result) for those it
        worked for, the others lost as their solo attempt would be (:meth:`lose`)."""
        futures = [(job, self.io.submit(io, job)) for job in jobs]
        done = []
        for job, future in futures:
            try:
                done.append((job, future.result()))
            except Exception as exc:
                self.lose(job, exc)
        return done

    def together(
        self, action: str, writes: Iterable[tuple[PackedJob, Write[T]]]
    ) -> list[tuple[PackedJob, T]]:
        """The members' fenced writes in one transaction; (member, answer) for those
        written; a member refused as stale has lost its job, one whose cancel was asked
        (an epoch row refused) is cancelled, and a database error that retrying does not
        cure leaves every member of the write to its lease."""
        pairs = list(writes)
        try:
            answers = write_together(self.db, action, [write for _, write in pairs])
        except DBAPIError as exc:
            for job, _ in pairs:
                self.lose(job, exc)
            return []
        done = []
        for (job, _), answer in zip(pairs, answers, strict=True):
            if isinstance(answer, StaleAttempt):
                self.end(job, "lost")
            elif isinstance(answer, queue.CancelRequested):
                self.cancelled(job)
            else:
                done.append((job, answer))
        return done

    # -- leaving ------------------------------------------------------------------

    @contextmanager
    def guard(self, job: PackedJob) -> Iterator[None]:
        """A member's part in the pack: what goes wrong there ends that member alone."""
        try:
            yield
        except Exception as exc:
            self.lose(job, exc)

    def lose(self, job: PackedJob, exc: BaseException | None) -> None:
        """``exc`` ended the member, as it ends a solo attempt (``Attempt.run``): a stale
        write → lost; the store failing → handed back; a database error → abandoned to
        its lease; anything else → the job failed with it."""
        if self.jobs.get(job.job_id) is not job:
            return  # it has left already
        if isinstance(exc, StaleAttempt):
            self.end(job, "lost")
        elif exc is not None and store_errors.is_outage(exc):  # not the job's: back it goes
            self.end(job, store_failed(job.reporter, exc, self.store))
        elif isinstance(exc, DBAPIError):
            log.warning(
                "database error",
                extra={"action": "abandon", "error": str(exc), **job.reporter.fields},
            )
            self.end(job, "abandoned")
        else:
            self.fail(job, exc or RuntimeError("the member failed"))

    def fail(self, job: PackedJob, exc: BaseException) -> None:
        message = store_errors.scrub(describe(exc), self.store)
        log.warning(
            "job failed",
            extra={"action": "fail", "error": message, **job.reporter.fields},
            exc_info=not is_expected(exc),
        )
        try:
            job.reporter.fail(message)
        except StaleAttempt:
            self.end(job, "lost")
            return
        except DBAPIError:
            self.end(job, "abandoned")
            return
        checkpoints.drop(self.store, job.job_id)
        self.end(job, "failed")

    def cancelled(self, job: PackedJob) -> None:
        """The member's cancel was asked: acknowledged, its checkpoints dropped, out."""
        with self.guard(job):
            job.reporter.acknowledge_cancel()
            checkpoints.drop(self.store, job.job_id)
            self.end(job, "cancelled")

    def back(self, jobs: list[PackedJob], *, checkpoint: bool) -> None:
        """Members back to the queue, together: each from a checkpoint of where it
        stands (``checkpoint``), or from its last committed one and unkeyed, so that
        its next claim trains it solo."""
        from fitq.worker.engine.pack import MemberStatus

        saved: dict[PackedJob, str] = {}
        if checkpoint:  # (a member that failed in the round goes back to its last one)
            usable = [j for j in jobs if self.pack.status(j.job_id) is not MemberStatus.FAILED]
            saved = dict(self.save_all(usable))
        solo = not checkpoint
        jobs = [j for j in jobs if self.jobs.get(j.job_id) is j]  # (a failed save failed it)
        writes = [(j, j.reporter.hand_back_write(saved.get(j), solo=solo)) for j in jobs]
        back = [job for job, _ in self.together("hand back", writes)]
        self.commit_trails([(job, saved[job]) for job in back if job in saved])
        for job in back:
            self.end(job, "handed back")

    def end(self, job: PackedJob, outcome: str) -> None:
        """The member's attempt ended: out of the pack, its heartbeat and our jobs."""
        if self.jobs.get(job.job_id) is not job:
            return
        if job.job_id in self.pack.members:
            self.pack.remove(job.job_id)
        del self.jobs[job.job_id]
        self.heartbeat.discard(job.reporter)
        self.outcomes[job.job_id] = outcome
        log.info(f"job {outcome}", extra={"action": outcome, **job.reporter.fields})
