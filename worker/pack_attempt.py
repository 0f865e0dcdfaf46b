"""Compatible jobs trained together as one pack (``fitq.worker.engine.pack``), each
still a whole job.

The worker hands a claimed job with a ``pack_key`` to a :class:`PackAttempt` when
packing is on (``FITQ_PACK_MAX`` > 1, ``worker/pack_size.py``). The attempt claims up
to K−1 more queued jobs of that key (``queue.claim_compatible``: one statement) and
trains them in one ``Pack``, the pack of one included, so that jobs queued later can
join it. Every member keeps what a solo attempt has (``worker/attempt.py``): its own
claim (attempt, lease, fencing), :class:`~fitq.worker.reporter.Reporter`, checkpoint
trail, History rows, events, cancel, test metrics and model. One heartbeat beats every
member in one statement.

At each step boundary (``on_step`` of the round):

- a member whose lease went to another worker leaves the pack, writing nothing more
  (``lost``); one whose cancel was asked leaves it, acknowledged (``cancelled``); the
  others go on, unchanged;
- shutdown (SIGTERM) checkpoints every member where it stands and hands it back;
- every ``FITQ_CHECKPOINT_SECONDS`` every member is checkpointed.

At each round boundary (each member's epoch end), for the members whose epoch ended:
their checkpoints (the solo format, ``checkpoints.save``), then their History rows,
each through its own fenced ``Reporter.epoch_write`` as solo; then the end of those
that ended: finished or early stopped → evaluated on the test set and exported (the
pack's per-member functions), the job finished; pruned by its sweep → stopped there
(``Pack.stop``) and finished so. A NaN/Inf loss fails that member alone, with its
epoch and step. Then queued compatible jobs join, each resumed from its own checkpoint
(continuous packing), and the pack's size is written on its members.

A boundary writes its members together (``worker/pack_members.py``): their files side
by side, their rows in one transaction, each member's write in its own savepoint, so
that a pack pays for a boundary about what one job pays for an epoch.

Errors. What is a job's own (its data, its numbers, its checkpoint) fails that job
alone, as its solo attempt would; the artifact store failing under a member (disk
full, unreachable) hands that member back (``worker/store_errors.py``), and the pack
claims no more jobs. A failing pack step (out of
memory, say) is no member's: every member goes back to the queue, from its last
committed checkpoint, unkeyed (``queue.requeue(solo=True)``), so its next claim trains
it solo, where an error is its own; a member that could not join the pack for such a
reason goes back the same way.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import DBAPIError

from fitq.service import queue
from fitq.service.errors import StaleAttempt
from fitq.service.settings import Settings
from fitq.service.store import ArtifactStore, keys
from fitq.worker import checkpoints, data, pack_size, store_errors
from fitq.worker.attempt import StepObserver, StopRequested, describe, is_expected
from fitq.worker.pack_members import IO_THREADS, Members, PackedJob
from fitq.worker.reporter import Database, Heartbeat
from fitq.worker.run_time import RunTime

log = logging.getLogger("fitq.worker")

PROGRESS_SECONDS = 0.2
"""How often the members' step counters are refreshed for the heartbeat to write."""


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
        self.limit = 1  # K, set from the first job's data
        self._claimed = 0
        self._sized: frozenset[str] = frozenset()  # the members the size was written for
        self._last_checkpoint = self._last_progress = time.monotonic()

    @property
    def fields(self) -> dict[str, Any]:
        return {"pack_id": self.pack_id, "worker_id": self.worker_id}

    def run(self) -> dict[str, str]:
        """Train every member to its end; return each claimed job's outcome."""
        from fitq.worker.engine.pack import Pack

        self.pack = Pack(self.device)
        lease = self.settings.lease_seconds
        with (
            ThreadPoolExecutor(IO_THREADS, thread_name_prefix="fitq-pack-io") as io,
            Heartbeat(self.db, [], lease).running() as heartbeat,
        ):
            self.members = Members(self.pack, self.db, self.store, heartbeat, io)
            self._admit([self.first])
            self._join()
            log.info("pack started", extra={"pack_size": len(self.members), **self.fields})
            self._train()
        log.info("pack ended", extra=self.fields)
        return self.members.outcomes

    # -- the rounds -------------------------------------------------------------------

    def _train(self) -> None:
        while self.members:
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
                    "pack step failed; its members go back to train solo",
                    extra={"error": describe(exc), **self.fields},
                    exc_info=not is_expected(exc),
                )
                self._hand_back_all(checkpoint=False)
                return
            self._boundary(results)
            self._join()

    def _on_step(self, _step: int, _steps: int) -> None:
        """A step boundary of the round: act on what the heartbeat learnt."""
        now = time.monotonic()
        if self.on_step is not None or now - self._last_progress > PROGRESS_SECONDS:
            self._progress()
            self._last_progress = now
        for job in self.members:
            reason = job.reporter.stop_asked()
            if reason == "lost":
                self.members.end(job, "lost")
            elif reason == "cancel":
                self.members.cancelled(job)
            elif job.run_time is not None:
                with self.members.guard(job):  # past max_seconds: this member fails alone
                    epochs, step, _ = self.pack.progress(job.job_id)
                    job.run_time.check(epochs + 1, step)
        if self.stop.is_set():
            raise StopRequested("shutdown")
        if now - self._last_checkpoint > self.settings.checkpoint_seconds:
            self._checkpoint_all()

    def _progress(self) -> None:
        """Each member's step counter, and the step observer for each member that moved."""
        for job in self.members:
            epochs, step, steps = self.pack.progress(job.job_id)
            job.reporter.progress = (epochs + 1, step, steps)
            if self.on_step is not None and (epochs, step) != job.seen and step > 0:
                job.seen = (epochs, step)
                self.on_step(job.claim, epochs + 1, step)

    def _checkpoint_all(self) -> None:
        """Mid-epoch: every training member checkpointed where it stands."""
        from fitq.worker.engine.pack import MemberStatus

        training = [
            job
            for job in self.members
            if self.pack.status(job.job_id) is MemberStatus.TRAINING  # (a NaN waits for the end)
        ]
        key_of = dict(self.members.save_all(training))
        writes = [(job, job.reporter.checkpoint_write(key)) for job, key in key_of.items()]
        done = self.members.together("checkpoint", writes)
        self.members.commit_trails([(job, key_of[job]) for job, _ in done])
        self._last_checkpoint = time.monotonic()

    # -- a round's end ----------------------------------------------------------------

    def _boundary(self, results: dict[str, Any]) -> None:
        """Each member whose epoch ended: its checkpoint, History row, and end if it ended."""
        from fitq.worker.engine.pack import MemberStatus

        ended = []
        for job in self.members:
            result = results.get(job.job_id)
            if result is None:
                continue
            if result.status is MemberStatus.FAILED:
                self.members.lose(job, result.error)
            else:
                ended.append((job, result))
        saved = dict(self.members.save_all([job for job, _ in ended]))
        result_of = {job: result for job, result in ended if job in saved}
        self._log_executions(result_of)
        writes = [
            (job, job.reporter.epoch_write(r.epoch, r.logs, saved[job]))
            for job, r in result_of.items()
        ]
        written = self.members.together("epoch", writes)
        self.members.commit_trails([(job, saved[job]) for job, _ in written])
        finishing = []
        for job, pruned in written:
            result = result_of[job]
            log.info(
                "epoch", extra={"action": "epoch", "epoch": result.epoch, **job.reporter.fields}
            )
            if pruned and not result.done:  # a sweep's early termination stopped it here
                self.pack.stop(job.job_id)
            if pruned or result.done:
                finishing.append(job)
        self._finish_all(finishing)

    def _log_executions(self, ended: dict[PackedJob, Any]) -> None:
        """The execution log's rows, in their own transaction before the fenced writes
        (as solo: a stale run shows too)."""
        writes = [job.reporter.log_execution_write(result.epoch) for job, result in ended.items()]
        if writes:
            self.db.write("log_execution", lambda s: [write(s) for write in writes])

    def _finish_all(self, jobs: list[PackedJob]) -> None:
        """Members at their end: evaluated, exported, finished together."""
        saving = self.members.together(
            "phase", [(j, j.reporter.phase_write("saving")) for j in jobs]
        )
        model_of: dict[PackedJob, tuple[str, dict[str, float] | None, bytes]] = {}
        for job, _ in saving:
            with self.members.guard(job):
                model_of[job] = self._model(job)
        stored = self.members.each(
            list(model_of), lambda j: self.store.put_bytes(model_of[j][0], model_of[j][2])
        )
        writes = [(job, job.reporter.finish_write(*model_of[job][:2])) for job, _ in stored]
        for job, _ in self.members.together("finish", writes):
            self.members.io.submit(checkpoints.drop, self.store, job.job_id)
            self.members.end(job, "succeeded")

    def _model(self, job: PackedJob) -> tuple[str, dict[str, float] | None, bytes]:
        """(its model's key, its test metrics, the model file): one file per attempt, as solo."""
        claim = job.claim
        test_metrics = self.pack.evaluate(job.job_id, *job.test) if job.test is not None else None
        spec_json = json.dumps(claim.spec, sort_keys=True)
        blob = self.pack.export(job.job_id, {"fitq_spec": spec_json})
        return keys.model(claim.job_id, claim.attempt), test_metrics, blob

    # -- joining ----------------------------------------------------------------------

    def _join(self) -> None:
        """Claim queued compatible jobs into the free places, and admit them."""
        room = self.limit - len(self.members)
        if self.budget is not None:
            room = min(room, self.budget - self._claimed)
        if room < 1 or self.stop.is_set() or self._store_failing():
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
                    max_running_per_key=self.settings.max_running_jobs_per_key,
                )
        except DBAPIError as exc:  # the database is away: try again at the next boundary
            log.warning("pack claim failed", extra={"error": str(exc), **self.fields})
            return
        self._admit(claims)

    def _store_failing(self) -> bool:
        """A member went back for the store: claim no more (the worker backs off after)."""
        return store_errors.STORE_OUTCOME in self.members.outcomes.values()

    def _admit(self, claims: list[queue.Claim]) -> None:
        """Claimed jobs into the pack: their data loaded, each resumed from its checkpoint."""
        from fitq.worker.engine.pack import MemberStatus

        joining = []
        for claim in claims:
            self._claimed += 1
            job = self.members.join(claim, self.worker_id)
            joining.append(job)
            log.info("job started", extra={"action": "start", **job.reporter.fields, **self.fields})
        phase = [(job, job.reporter.phase_write("loading_data")) for job in joining]
        added = []
        for job, _ in self.members.together("phase", phase):
            with self._joining(job):
                added.append((job, self._add(job)))
        self.members.together("phase", [(j, j.reporter.phase_write("training")) for j, _ in added])
        self._finish_all([j for j, status in added if status is not MemberStatus.TRAINING])

    def _add(self, job: PackedJob) -> Any:
        """One member in: its status (a checkpoint may hold a run that has ended)."""
        claim = job.claim
        arrays = self.db.retrying("load", lambda: self._load(claim.spec))
        job.run_time = self.db.retrying(
            "run time", lambda: RunTime.of(self.db.session, claim.job_id, claim.spec, self.settings)
        )
        if not self.pack.members:  # the first member sizes the pack
            rows = int(arrays.x.shape[0])
            self.limit = pack_size.pack_max(self.settings, self.device, claim.spec, rows)
        resume = checkpoints.load_for_resume(self.store, claim.job_id, claim.checkpoint_key)
        job.trail = checkpoints.Trail(
            self.store, claim.job_id, resume[0] if resume is not None else None
        )
        job.test = arrays.test
        return self.pack.add(
            claim.job_id,
            claim.spec,
            arrays.x,
            arrays.y,
            arrays.validation,
            checkpoint=resume[1] if resume is not None else None,
            dataset_key=claim.spec["dataset_id"],
            validation_key=claim.spec.get("validation_dataset_id"),
        )

    def _load(self, spec: dict[str, Any]) -> data.JobArrays:
        with self.db.session() as session:
            return data.load_job(session, self.store, spec)

    # -- the pack's size; handing back ------------------------------------------------

    def _write_size(self) -> None:
        """The pack's id and size on every member, when its membership changed."""
        members = frozenset(self.members.jobs)
        if members == self._sized or not members:
            return
        claims = [job.claim for job in self.members]

        def write(session: Any) -> set[str]:
            return queue.set_pack_size(session, self.pack_id, len(claims), claims)

        try:
            self.db.write("pack_size", write)
        except DBAPIError:
            return  # written at the next boundary
        self._sized = members

    def _hand_back_all(self, *, checkpoint: bool) -> None:
        """Every member back to the queue: at shutdown from a checkpoint of where it
        stands; after a failing pack step from its last committed one, to train solo."""
        self.members.back(list(self.members), checkpoint=checkpoint)

    @contextmanager
    def _joining(self, job: PackedJob) -> Iterator[None]:
        """A member's arrival: an error that is not the job's own (out of memory as the
        pack grew, say) sends it back to the queue to train solo; any other ends it as
        its solo attempt would end."""
        try:
            yield
        except Exception as exc:
            if (
                isinstance(exc, StaleAttempt | DBAPIError)
                or is_expected(exc)
                or store_errors.is_outage(exc)
            ):
                self.members.lose(job, exc)
                return
            self.limit = max(1, len(self.members) - 1)
            log.warning("to train solo", extra={"error": describe(exc), **job.reporter.fields})
            self.members.back([job], checkpoint=False)
