"""Workers stopped rather than killed: SIGTERM hands the job back at once and
the other worker finishes it; a worker paused (SIGSTOP) past its lease loses
the job to the other worker, and when it wakes (SIGCONT) every write of its
stale attempt is refused."""

from __future__ import annotations

import signal
import time

from sqlalchemy import select

from fitq.service.db.engine import session_factory
from fitq.service.db.models import TERMINAL_STATUSES, ExecutionLog, Job, JobEpoch
from tests.reliability.harness import (
    DEADLINE_SECONDS,
    LEASE_SECONDS,
    Scene,
    assert_bit_identical,
    iris_spec,
    model_weights,
    record,
    reference_weights,
)
from tests.support.faults import Faults
from tests.support.fleet import Fleet, Process, worker_pid
from tests.support.rows import epochs_of, job_row, submit
from tests.support.waits import wait_for

EPOCHS = 12
SPEC = iris_spec(seed=3, epochs=EPOCHS, batch_size=1)  # 150 steps an epoch
PAUSE_TRIES = 5
SLOW_STEPS = Faults(step_delay_ms=3)  # ~0.45 s an epoch: still running when stopped


def busy_mid_epoch(url: str, job_id: str) -> Job:
    """Wait for the job to be running in its 2nd epoch or later, between steps."""

    def mid_epoch() -> Job | None:
        row = job_row(url, job_id)
        assert row.status not in TERMINAL_STATUSES, "the job ended before it could be stopped"
        return row if row.status == "running" and row.epoch >= 2 and row.step > 0 else None

    return wait_for(mid_epoch, "the job to be mid-epoch", timeout=DEADLINE_SECONDS)


def the_busy_worker(workers: Fleet, url: str, job_id: str) -> tuple[Job, Process]:
    """Start two workers, wait for one to be mid-epoch on the job (``busy_mid_epoch``),
    and return the job's row then and the process of the worker running it."""
    procs = [workers.start(), workers.start()]
    for proc in procs:
        workers.wait_started(proc)
    running = busy_mid_epoch(url, job_id)
    busy = workers.by_pid(worker_pid(running.worker_id))
    assert busy is not None
    return running, busy


def rows_of(url: str, model: type, job_id: str, attempt: int) -> list[int]:
    with session_factory(url)() as session:
        return sorted(
            session.scalars(
                select(model.epoch).where(model.job_id == job_id, model.attempt == attempt)  # type: ignore[attr-defined]
            )
        )


class TestSigterm:
    def test_mid_epoch_the_job_is_handed_back_and_the_other_worker_finishes_it(
        self,
        scene: Scene,
    ) -> None:
        job_id = submit(scene.url, scene.owner_id, SPEC)
        # A worker process of its own (`fitq worker`'s `serve`, with the step delay): the
        # entry point's signal handling, end to end.
        with scene.fleet(SLOW_STEPS, forked=False) as workers:
            running, stopping = the_busy_worker(workers, scene.url, job_id)
            sent = time.monotonic()
            stopping.send_signal(signal.SIGTERM)
            wait_for(
                lambda: (
                    (r := job_row(scene.url, job_id)).status == "queued"
                    or r.attempt > running.attempt
                ),
                "the hand-back",
                timeout=DEADLINE_SECONDS,
            )
            hand_back = time.monotonic() - sent
            assert stopping.wait(DEADLINE_SECONDS) == 0, workers.log_of(stopping)
            wait_for(
                lambda: job_row(scene.url, job_id).status in TERMINAL_STATUSES,
                "the job to end",
                timeout=DEADLINE_SECONDS,
            )
        row = job_row(scene.url, job_id)
        assert (row.status, row.attempt) == ("succeeded", running.attempt + 1), row.error
        assert worker_pid(row.worker_id) != stopping.pid
        assert epochs_of(scene.url, job_id) == list(range(1, EPOCHS + 1))
        assert_bit_identical(model_weights(scene.store, row), reference_weights(SPEC))
        record(
            "SIGTERM mid-epoch",
            scene.backend,
            jobs=1,
            workers=2,
            kills=0,
            lost=0,
            duplicated_epochs=0,
            hand_back_ms=round(hand_back * 1000, 1),
            exit_code=0,
        )


class TestPausedWorker:
    def test_a_worker_woken_after_a_takeover_changes_nothing(
        self,
        scene: Scene,
    ) -> None:
        job_id = submit(scene.url, scene.owner_id, SPEC)
        with scene.fleet(SLOW_STEPS) as workers:
            running, paused = the_busy_worker(workers, scene.url, job_id)
            pauses = 0
            for _ in range(PAUSE_TRIES):
                pauses += 1
                paused.send_signal(signal.SIGSTOP)
                stopped = time.monotonic()
                try:
                    taken = wait_for(
                        lambda: (r := job_row(scene.url, job_id)).attempt > running.attempt and r,
                        "the takeover",
                        timeout=LEASE_SECONDS * 4,
                    )
                    break
                except AssertionError:
                    # Paused inside a transaction, it holds the job's row (or SQLite's
                    # write) lock, which no lease can take back: let it go on, pause again.
                    paused.send_signal(signal.SIGCONT)
                    time.sleep(0.2)
            else:
                raise AssertionError("the job was never taken over")
            takeover = time.monotonic() - stopped
            stale_epochs = rows_of(scene.url, JobEpoch, job_id, running.attempt)
            stale_runs = rows_of(scene.url, ExecutionLog, job_id, running.attempt)
            paused.send_signal(signal.SIGCONT)
            wait_for(
                lambda: job_row(scene.url, job_id).status in TERMINAL_STATUSES,
                "the job to end",
                timeout=DEADLINE_SECONDS,
            )
            wait_for(
                lambda: "job lost" in workers.log_of(paused),
                "the stale worker to give up",
                timeout=DEADLINE_SECONDS,
            )
            assert paused.poll() is None, "the stale worker should go on working"
        row = job_row(scene.url, job_id)
        assert (row.status, row.attempt) == ("succeeded", taken.attempt), row.error
        assert row.worker_id == taken.worker_id
        assert row.model_key == f"jobs/{job_id}/model-a{taken.attempt}.safetensors"
        assert rows_of(scene.url, JobEpoch, job_id, running.attempt) == stale_epochs
        assert epochs_of(scene.url, job_id) == list(range(1, EPOCHS + 1))
        assert_bit_identical(model_weights(scene.store, row), reference_weights(SPEC))
        late_runs = len(rows_of(scene.url, ExecutionLog, job_id, running.attempt)) - len(stale_runs)
        record(
            "SIGSTOP past the lease, then SIGCONT",
            scene.backend,
            jobs=1,
            workers=2,
            kills=0,
            lost=0,
            duplicated_epochs=0,
            rescue={"p50_ms": round(takeover * 1000, 1), "max_ms": round(takeover * 1000, 1)},
            stale_epochs_run_after_takeover=late_runs,
            pauses=pauses,
        )
