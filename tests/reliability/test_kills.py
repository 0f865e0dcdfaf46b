"""Workers killed with SIGKILL (``kill -9``) at the worst moments: no job is
lost, no epoch is recorded twice, and every job that succeeds ends with the
weights of an uninterrupted run, bit for bit; a job whose worker always dies
fails after ``max_attempts`` without holding up the others."""

from __future__ import annotations

import signal
import time
from collections import Counter

from fitq.service.db.models import TERMINAL_STATUSES
from fitq.worker import checkpoints
from tests.reliability.harness import (
    DEADLINE_SECONDS,
    POLL_SECONDS,
    Scene,
    assert_bit_identical,
    iris_spec,
    model_weights,
    record,
    reference_weights,
    summary,
)
from tests.support.faults import Faults
from tests.support.fleet import worker_pid
from tests.support.rows import epochs_of, executions, job_row, job_rows, submit
from tests.support.waits import wait_for

JOBS, EPOCHS, WORKERS, KILLS = 6, 8, 2, 5
MAX_KILLS_PER_JOB = 2
"""Below max_attempts (3), so every job must still succeed."""
SLOW_STEPS = Faults(step_delay_ms=3)
"""~0.45 s an epoch of 150 one-row steps: a kill lands mid-epoch, after a
mid-epoch checkpoint. Without it a fast idle machine ends every epoch before
the progress a kill waits for (step > 0) is ever seen, and nothing is killed."""


class TestKillNine:
    def test_busy_workers_killed_five_times_lose_nothing_and_change_nothing(
        self,
        scene: Scene,
    ) -> None:
        specs = [iris_spec(seed=i, epochs=EPOCHS, batch_size=1) for i in range(JOBS)]
        ids = [submit(scene.url, scene.owner_id, spec) for spec in specs]
        kills: Counter[str] = Counter()
        pending: dict[str, tuple[int, float]] = {}  # job -> (attempt killed, when)
        killed_in_epoch: dict[str, int] = {}  # job -> its last recorded epoch at its last kill
        rescues: list[float] = []
        started = time.monotonic()
        with scene.fleet(
            SLOW_STEPS,
            FITQ_CHECKPOINT_SECONDS="0.3",
        ) as workers:
            for _ in range(WORKERS):
                workers.start()
            while True:
                assert time.monotonic() - started < DEADLINE_SECONDS * 2, "jobs never ended"
                rows = job_rows(scene.url, ids)
                now = time.monotonic()
                for job_id, (attempt, when) in list(pending.items()):
                    if rows[job_id].attempt > attempt:
                        rescues.append(now - when)
                        del pending[job_id]
                if all(r.status in TERMINAL_STATUSES for r in rows.values()):
                    break
                if sum(kills.values()) < KILLS:
                    for row in rows.values():
                        proc = workers.by_pid(worker_pid(row.worker_id))
                        if (
                            row.status == "running"
                            and row.step > 0
                            and row.id not in pending
                            and kills[row.id] < MAX_KILLS_PER_JOB
                            # Killed again only once its rescue ended an epoch: two workers
                            # lost in a row before any epoch fail the job as one that
                            # likely runs out of memory (docs/reliability.md), not a rescue.
                            and row.epoch > killed_in_epoch.get(row.id, -1)
                            and proc is not None
                            and proc.poll() is None
                        ):
                            proc.send_signal(signal.SIGKILL)
                            proc.wait()
                            pending[row.id] = (row.attempt, time.monotonic())
                            # read after the kill: an epoch may have ended since ``rows``
                            killed_in_epoch[row.id] = job_row(scene.url, row.id).epoch
                            kills[row.id] += 1
                            workers.start()
                            break
                time.sleep(POLL_SECONDS)
        elapsed = time.monotonic() - started

        rows = job_rows(scene.url, ids)
        assert sum(kills.values()) == KILLS, "the jobs ended before every kill landed"
        errors = [r.error for r in rows.values()]
        assert [rows[i].status for i in ids] == ["succeeded"] * JOBS, errors
        for job_id, spec in zip(ids, specs, strict=True):
            assert epochs_of(scene.url, job_id) == list(range(1, EPOCHS + 1))
            assert_bit_identical(model_weights(scene.store, rows[job_id]), reference_weights(spec))
        record(
            "kill -9 of busy workers",
            scene.backend,
            jobs=JOBS,
            workers=WORKERS,
            kills=sum(kills.values()),
            lost=0,
            duplicated_epochs=0,
            rerun_epochs=executions(scene.url, ids) - JOBS * EPOCHS,
            rescue=summary(rescues),
            seconds=round(elapsed, 1),
        )

    def test_a_kill_mid_checkpoint_and_a_truncated_newest_checkpoint_change_nothing(
        self,
        scene: Scene,
    ) -> None:
        spec = iris_spec(seed=11, epochs=8, batch_size=4)
        job_id = submit(scene.url, scene.owner_id, spec)
        with scene.fleet() as workers:
            # Its 4th checkpoint is the end of epoch 4: half written, then kill -9.
            first = workers.start(Faults(die_in_checkpoint=4))
            assert first.wait(DEADLINE_SECONDS) == -signal.SIGKILL, workers.log_of(first)

            folder = scene.store.local_path(checkpoints.folder(job_id))
            assert folder is not None
            assert list(folder.glob(".tmp-*")), "the half-written file should be left as a temp"
            refs = checkpoints.listing(scene.store, job_id)
            assert all(checkpoints.verify(r, scene.store.get_bytes(r.key)) for r in refs)
            committed = job_row(scene.url, job_id).checkpoint_key
            assert committed is not None
            newest = checkpoints.parse(committed)
            assert newest is not None and newest.position == (3, 0)

            path = scene.store.local_path(committed)  # and now the newest complete one is damaged
            assert path is not None
            path.write_bytes(path.read_bytes()[:1000])

            second = workers.start()
            wait_for(
                lambda: job_row(scene.url, job_id).status in TERMINAL_STATUSES,
                "the job to end",
                timeout=DEADLINE_SECONDS,
            )
            log = workers.log_of(second)
        row = job_row(scene.url, job_id)
        assert (row.status, row.attempt) == ("succeeded", 2), row.error
        assert "checkpoint damaged" in log
        assert epochs_of(scene.url, job_id) == list(range(1, 9))
        assert_bit_identical(model_weights(scene.store, row), reference_weights(spec))
        record(
            "kill -9 mid-checkpoint + truncated newest",
            scene.backend,
            jobs=1,
            workers=2,
            kills=1,
            lost=0,
            duplicated_epochs=0,
            resumed_from="end of epoch 2 (epoch 3's file truncated, epoch 4's half-written)",
        )


class TestMaxAttempts:
    def test_a_job_whose_worker_always_dies_fails_and_the_others_succeed(
        self,
        scene: Scene,
    ) -> None:
        doomed = submit(scene.url, scene.owner_id, iris_spec(seed=1, epochs=4, batch_size=8))
        others = [
            submit(scene.url, scene.owner_id, iris_spec(seed=i, epochs=3, batch_size=16))
            for i in range(10)
        ]
        ids = [doomed, *others]
        deaths = 0
        started = time.monotonic()
        with scene.fleet(Faults(die_at=(doomed, 2))) as workers:
            for _ in range(WORKERS):
                workers.start()
            while any(r.status not in TERMINAL_STATUSES for r in job_rows(scene.url, ids).values()):
                assert time.monotonic() - started < DEADLINE_SECONDS * 2, "jobs never ended"
                dead = len(workers.procs) - len(workers.alive())
                if dead > deaths:  # a worker died: start another in its place
                    for _ in range(dead - deaths):
                        workers.start()
                    deaths = dead
                time.sleep(POLL_SECONDS)
        rows = job_rows(scene.url, ids)
        assert rows[doomed].status == "failed"
        assert rows[doomed].error == "worker lost on attempts 1–3"
        assert [rows[i].status for i in others] == ["succeeded"] * len(others)
        assert deaths == 3
        record(
            "worker always dies at epoch 2",
            scene.backend,
            jobs=len(ids),
            workers=WORKERS,
            kills=deaths,
            lost=0,
            duplicated_epochs=0,
            outcome="failed after 3 attempts; 10/10 others succeeded",
            seconds=round(time.monotonic() - started, 1),
        )
