"""Compatible jobs trained together as one pack (``fitq.worker.engine.pack``), each
still a whole job.

The worker hands a claimed job with a ``pack_key`` to a :class:`PackAttempt` when
packing is on (``FITQ_PACK_MAX`` > 1, ``worker/pack_size.py``). The attempt claims up
to K−1 more queued jobs of that key (``queue.claim_compatible``: one statement) and
trains them in one ``Pack``, the pack of one included, so that jobs submitted later
can join it. Every member keeps what a solo attempt has (``worker/attempt.py``): its
own claim (attempt, lease, fencing), :class:`~fitq.worker.reporter.Reporter`,
checkpoint trail, History rows, events, cancel, test metrics and model. One
heartbeat beats every member in one statement.

At each step boundary (``on_step`` of the round):

- a member whose lease went to another worker leaves the pack, writing nothing
  more (``lost``); one whose cancel was asked leaves it, acknowledged
  (``cancelled``); the others go on, unchanged;
- shutdown (SIGTERM) checkpoints every member where it stands and hands it back;
- every ``FITQ_CHECKPOINT_SECONDS`` every member is checkpointed.

At each round boundary (each member's epoch end), for each member in the order
they joined: its checkpoint (the solo format, ``checkpoints.save``) and its History
row through its own fenced ``Reporter.epoch``, as solo; then its end if it ended:
finished or early stopped → evaluated on its test set and its model exported (the
pack's per-member functions), the job finished; pruned by its sweep → stopped there
(``Pack.stop``) and finished so; a NaN/Inf loss → that job alone failed, with its
epoch and step. Then queued compatible jobs join, each resumed from its own
checkpoint (continuous packing), and the pack's size is written on its members.

Errors. What is a job's own (its data, its numbers, its checkpoint, a store write
for it) fails that job alone, as its solo attempt would. A failing pack step (out
of memory, say) is no member's: every member goes back to the queue, from its last
committed checkpoint, unkeyed (``queue.requeue(solo=True)``), so its next claim
trains it solo, where an error is its own; a member that could not be added to the
pack for such a reason goes back the same way.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError

from fitq.service import queue
from fitq.service.errors import StaleAttempt
from fitq.service.settings import Settings
from fitq.service.store import ArtifactStore, keys
from fitq.worker import checkpoints, data, pack_size
from fitq.worker.attempt import StepObserver, StopRequested, describe, is_expected
from fitq.worker.reporter import Database, Heartbeat, Reporter
from fitq.worker.run_time import RunTime

log = logging.getLogger("fitq.worker")

PROGRESS_SECONDS = 0.2
"""How often the members' step counters are refreshed for the heartbeat to write."""


@dataclass(eq=False)
class PackedJob:
    """One member's job: its claim's reporter, its checkpoints, its test set."""

    reporter: Reporter
    trail: checkpoints.Trail
    test: data.Arrays | None
    seen: tuple[int, int] = (-1, -1)  # (epochs done, step) the step observer last saw
    run_time: RunTime | None = None  # max_seconds (worker/run_time.py), read as it joins

    @property
    def claim(self) -> queue.Claim:
        return self.reporter.claim

    @property
    def job_id(self) -> str:
        return self.reporter.claim.job_id


class PackAttempt:
    """Trains ``claim``'s job and the compatible jobs that join it until none is left
    (:meth:`run`); ``budget`` caps the jobs it claims in all, ``claim``'s included."""

    def __init__(
        self,
        claim: queue.Claim,
        db: Database,
        store: ArtifactStore,
        settings: Settings,
        *,
        worker_id: str,
        device: str,
        stop: threading.Event,
        on_step: StepObserver | None = None,
        budget: int | None = None,
    ):
        assert claim.pack_key is not None, "a job with no pack_key trains solo"
        self.first, self.key = claim, claim.pack_key
        self.db, self.store, self.settings = db, store, settings
        self.worker_id, self.device, self.stop, self.on_step = worker_id, device, stop, on_step
        self.budget = budget
        self.pack_id = uuid.uuid4().hex
        self.outcomes: dict[str, str] = {}
        self.jobs: dict[str, PackedJob] = {}
        self.limit = 1  # K, set from the first job's data
        self._claimed = 0
        self._sized: frozenset[str] = frozenset()  # the members the size was written for
        self._heartbeat: Heartbeat | None = None
        self._last_checkpoint = self._last_progress = time.monotonic()

    @property
    def fields(self) -> dict[str, Any]:
        return {"pack_id": self.pack_id, "worker_id": self.worker_id}

    def run(self) -> dict[str, str]:
        """Train every member to its end; return each claimed job's outcome."""
        from fitq.worker.engine.pack import Pack

        self.pack = Pack(self.device)
        with Heartbeat(self.db, [], self.settings.lease_seconds).running() as heartbeat:
            self._heartbeat = heartbeat
            self._admit([self.first])
            self._join()
            log.info("pack started", extra={"pack_size": len(self.jobs), **self.fields})
            self._train()
        log.info("pack ended", extra=self.fields)
        return self.outcomes

    # -- the rounds -------------------------------------------------------------------

    def _train(self) -> None:
        while self.jobs:
            self._write_size()
            if self.stop.is_set():
                self._hand_back_all(checkpoint=True)
                return
            try:
                results = self.pack.run_epoch(self._on_step)
            except StopRequested:
                self._hand_back_all(checkpoint=True)
                return
            except Exception as exc:  # a pack step failed: no member's own error
                log.warning(
                    "pack step failed; members go back to train solo",
                    extra={"error": describe(exc), **self.fields},
                    exc_info=not is_expected(exc),
                )
                self._hand_back_all(checkpoint=False)
                return
            for job in list(self.jobs.values()):
                result = results.get(job.job_id)
                if result is not None:
                    with self._guard(job):
                        self._epoch_end(job, result)
            self._join()

    def _on_step(self, _step: int, _steps: int) -> None:
        """A step boundary of the round: act on what the heartbeat learnt."""
        now = time.monotonic()
        if self.on_step is not None or now - self._last_progress > PROGRESS_SECONDS:
            self._progress()
            self._last_progress = now
        for job in list(self.jobs.values()):
            reason = job.reporter.stop_asked()
            if reason is not None:
                with self._guard(job):
                    self._leave(job, reason)
            elif job.run_time is not None:
                with self._guard(job):  # past max_seconds: this member fails alone
                    epochs, step, _ = self.pack.progress(job.job_id)
                    job.run_time.check(epochs + 1, step)
        if self.stop.is_set():
            raise StopRequested("shutdown")
        if now - self._last_checkpoint > self.settings.checkpoint_seconds:
            self._checkpoint_all()

    def _progress(self) -> None:
        """Each member's step counter, and the step observer for each member that moved."""
        for job in self.jobs.values():
            epochs, step, steps = self.pack.progress(job.job_id)
            job.reporter.progress = (epochs + 1, step, steps)
            if self.on_step is not None and (epochs, step) != job.seen and step > 0:
                job.seen = (epochs, step)
                self.on_step(job.claim, epochs + 1, step)

    def _leave(self, job: PackedJob, reason: str) -> None:
        """A member leaves mid-round: its lease was lost, or its cancel asked."""
        if reason == "cancel":
            job.reporter.acknowledge_cancel()
            checkpoints.drop(self.store, job.job_id)
            self._end(job, "cancelled")
        else:
            self._end(job, "lost")

    def _checkpoint_all(self) -> None:
        from fitq.worker.engine.pack import MemberStatus

        for job in list(self.jobs.values()):
            if self.pack.status(job.job_id) is not MemberStatus.TRAINING:
                continue  # failed in this round: it is reported at the round's end
            with self._guard(job):
                key = self._save(job)
                job.reporter.checkpoint(key)
                job.trail.committed(key)
        self._last_checkpoint = time.monotonic()

    # -- a member's epoch end ---------------------------------------------------------

    def _epoch_end(self, job: PackedJob, result: Any) -> None:
        from fitq.worker.engine.pack import MemberStatus

        if result.status is MemberStatus.FAILED:
            raise result.error  # failed alone, by the guard
        key = self._save(job)
        job.reporter.log_execution(result.epoch)  # apart from the fenced write, as solo
        pruned = job.reporter.epoch(result.epoch, result.logs, key)
        job.trail.committed(key)
        log.info("epoch", extra={"action": "epoch", "epoch": result.epoch, **job.reporter.fields})
        done = result.done
        if pruned and not done:  # a sweep's early termination stopped the trial here
            self.pack.stop(job.job_id)
            done = True
        if done:
            self._finish(job)

    def _finish(self, job: PackedJob) -> None:
        claim = job.claim
        test_metrics = None
        if job.test is not None:
            job.reporter.phase("evaluating")
            test_metrics = self.pack.evaluate(job.job_id, *job.test)
        job.reporter.phase("saving")
        model_key = keys.model(claim.job_id, claim.attempt)  # one file per attempt, as solo
        spec_json = json.dumps(claim.spec, sort_keys=True)
        self.store.put_bytes(model_key, self.pack.export(job.job_id, {"fitq_spec": spec_json}))
        job.reporter.finish(model_key, test_metrics)
        checkpoints.drop(self.store, claim.job_id)
        self._end(job, "succeeded")

    # -- joining ----------------------------------------------------------------------

    def _join(self) -> None:
        """Claim queued compatible jobs into the free places, and admit them."""
        room = self.limit - len(self.jobs)
        if self.budget is not None:
            room = min(room, self.budget - self._claimed)
        if room < 1 or self.stop.is_set():
            return
        try:
            with self.db.transaction() as session:
                claims = queue.claim_compatible(
                    session,
                    self.worker_id,
                    self.settings.lease_seconds,
                    pack_key=self.key,
                    limit=room,
                    pack_id=self.pack_id,
                    device=self.device,
                )
        except DBAPIError as exc:  # the database is away: try again at the next boundary
            log.warning("pack claim failed", extra={"error": str(exc), **self.fields})
            return
        self._admit(claims)

    def _admit(self, claims: list[queue.Claim]) -> None:
        """Each claimed job into the pack: its data loaded, resumed from its checkpoint."""
        for claim in claims:
            self._claimed += 1
            stale = self.jobs.get(claim.job_id)
            if stale is not None:  # our own lease ran out and we claimed it again
                self._end(stale, "lost")
            reporter = Reporter(self.db, claim, self.worker_id)
            assert self._heartbeat is not None
            self._heartbeat.add(reporter)
            job = PackedJob(reporter, checkpoints.Trail(self.store, claim.job_id, None), None)
            self.jobs[claim.job_id] = job
            log.info("job started", extra={"action": "start", **reporter.fields, **self.fields})
            with self._guard(job, joining=True):
                self._add(job)

    def _add(self, job: PackedJob) -> None:
        from fitq.worker.engine.pack import MemberStatus

        claim, reporter = job.claim, job.reporter
        reporter.phase("loading_data")
        arrays = self.db.retrying("load", lambda: self._load(claim.spec))
        job.run_time = self.db.retrying(
            "run time", lambda: RunTime.of(self.db.session, claim.job_id, claim.spec, self.settings)
        )
        if not self.pack.members:  # the first member sizes the pack
            self.limit = pack_size.pack_max(
                self.settings, self.device, claim.spec, int(arrays.x.shape[0])
            )
        resume = checkpoints.load_for_resume(self.store, claim.job_id, claim.checkpoint_key)
        job.trail = checkpoints.Trail(
            self.store, claim.job_id, resume[0] if resume is not None else None
        )
        job.test = arrays.test
        status = self.pack.add(
            claim.job_id,
            claim.spec,
            arrays.x,
            arrays.y,
            arrays.validation,
            checkpoint=resume[1] if resume is not None else None,
            dataset_key=claim.spec["dataset_id"],
            validation_key=claim.spec.get("validation_dataset_id"),
        )
        reporter.phase("training")
        if status is not MemberStatus.TRAINING:  # its checkpoint holds a run that ended
            self._finish(job)

    def _load(self, spec: dict[str, Any]) -> data.JobArrays:
        with self.db.session() as session:
            return data.load_job(session, self.store, spec)

    # -- leaving ----------------------------------------------------------------------

    @contextmanager
    def _guard(self, job: PackedJob, *, joining: bool = False) -> Iterator[None]:
        """A member's writes and its part of the pack: what goes wrong ends that member
        alone, as its solo attempt would end (``Attempt.run``)."""
        try:
            yield
        except StaleAttempt:
            self._end(job, "lost")
        except DBAPIError as exc:  # not the job's fault: leave it to its lease
            log.warning(
                "database error",
                extra={"action": "abandon", "error": str(exc), **job.reporter.fields},
            )
            self._end(job, "abandoned")
        except Exception as exc:
            if joining and not is_expected(exc):  # e.g. out of memory as the pack grew
                self.limit = max(1, len(self.jobs) - 1)
                self._back(job, None, solo=True, why=describe(exc))
            else:
                self._fail(job, exc)

    def _fail(self, job: PackedJob, exc: BaseException) -> None:
        message = describe(exc)
        log.warning(
            "job failed",
            extra={"action": "fail", "error": message, **job.reporter.fields},
            exc_info=not is_expected(exc),
        )
        try:
            job.reporter.fail(message)
        except StaleAttempt:
            self._end(job, "lost")
            return
        except DBAPIError:
            self._end(job, "abandoned")
            return
        checkpoints.drop(self.store, job.job_id)
        self._end(job, "failed")

    def _hand_back_all(self, *, checkpoint: bool) -> None:
        """Every member back to the queue: at shutdown from a checkpoint of where it
        stands; after a failing pack step from its last committed one, to train solo."""
        from fitq.worker.engine.pack import MemberStatus

        for job in list(self.jobs.values()):
            with self._guard(job):
                usable = checkpoint and self.pack.status(job.job_id) is not MemberStatus.FAILED
                key = self._save(job) if usable else None
                self._back(job, key, solo=not checkpoint)

    def _back(self, job: PackedJob, key: str | None, *, solo: bool, why: str = "") -> None:
        try:
            job.reporter.hand_back(key, solo=solo)
        except StaleAttempt:
            self._end(job, "lost")
            return
        if key is not None:
            job.trail.committed(key)
        if why:
            log.warning("to train solo", extra={"error": why, **job.reporter.fields})
        self._end(job, "handed back")

    def _end(self, job: PackedJob, outcome: str) -> None:
        """The member's attempt ended: out of the pack, its heartbeat and our jobs."""
        if job.job_id in self.pack.members and self.jobs.get(job.job_id) is job:
            self.pack.remove(job.job_id)
        if self.jobs.get(job.job_id) is job:
            del self.jobs[job.job_id]
        if self._heartbeat is not None:
            self._heartbeat.discard(job.reporter)
        self.outcomes[job.job_id] = outcome
        log.info(f"job {outcome}", extra={"action": outcome, **job.reporter.fields})

    # -- writes -----------------------------------------------------------------------

    def _save(self, job: PackedJob) -> str:
        """The member's checkpoint where it stands, saved under its position."""
        epochs, step, _steps = self.pack.progress(job.job_id)
        blob = self.pack.checkpoint(job.job_id)
        return checkpoints.save(self.store, job.job_id, job.claim.attempt, (epochs, step), blob)

    def _write_size(self) -> None:
        """The pack's id and size on every member, when its membership changed."""
        members = frozenset(self.jobs)
        if members == self._sized or not members:
            return
        claims = [job.claim for job in self.jobs.values()]

        def write(session: Any) -> set[str]:
            return queue.set_pack_size(session, self.pack_id, len(claims), claims)

        try:
            self.db.write("pack_size", write)
        except DBAPIError:
            return  # written at the next boundary
        self._sized = members
