"""A worker holding a pack, killed (``kill -9``), killed half-way through a member's
checkpoint, or stopped (SIGTERM): every member resumes on another worker, nothing is
lost or recorded twice, and each ends bit for bit as in the uninterrupted pack; a
member that always kills its worker fails alone once the others train solo on their
last attempt."""

from __future__ import annotations

import signal
import time
from typing import Any

from fitq.service.db.models import TERMINAL_STATUSES, Job
from fitq.service.store import ArtifactStore
from fitq.worker import checkpoints
from tests.reliability.harness import (
    DEADLINE_SECONDS,
    PACKED,
    POLL_SECONDS,
    Scene,
    assert_bit_identical,
    iris_spec,
    model_weights,
    record,
    reference_pack_weights,
    summary,
)
from tests.support.faults import Faults
from tests.support.fleet import Fleet, worker_pid
from tests.support.rows import epochs_of, executions, job_rows, submit
from tests.support.waits import wait_for


def member(i: int, epochs: int, batch_size: int) -> dict[str, Any]:
    """A compatible job: the iris net with its own seed and learning rate."""
    spec = iris_spec(seed=i, epochs=epochs, batch_size=batch_size)
    spec["compile"]["optimizer"] = {"name": "adam", "learning_rate": 0.005 * (i + 1)}
    return spec


def all_ended(url: str, ids: list[str]) -> dict[str, Job] | None:
    rows = job_rows(url, ids)
    return rows if all(r.status in TERMINAL_STATUSES for r in rows.values()) else None


def assert_resumed_exactly(
    url: str, store: ArtifactStore, ids: list[str], specs: list[dict[str, Any]], attempt: int
) -> None:
    """Every member succeeded on ``attempt``, each epoch recorded once, bit for bit."""
    rows = job_rows(url, ids)
    for job_id, spec in zip(ids, specs, strict=True):
        row = rows[job_id]
        assert (row.status, row.attempt) == ("succeeded", attempt), row.error
        assert epochs_of(url, job_id) == list(range(1, spec["fit"]["epochs"] + 1))
        assert_bit_identical(model_weights(store, row), reference_pack_weights(spec))


def one_pack_mid_epoch(url: str, ids: list[str]) -> dict[str, Job]:
    """Wait for every member running in one pack, past its 2nd epoch's start, with a
    mid-epoch checkpoint committed (so the resume starts inside an epoch)."""

    def ready() -> dict[str, Job] | None:
        rows = job_rows(url, ids)
        assert not any(r.status in TERMINAL_STATUSES for r in rows.values()), "a member ended"
        keys = [checkpoints.parse(r.checkpoint_key or "") for r in rows.values()]
        together = len({r.pack_id for r in rows.values()}) == 1 and all(
            r.status == "running" and r.pack_size == len(ids) and r.epoch >= 2 and r.step > 0
            for r in rows.values()
        )
        return rows if together and any(k is not None and k.step > 0 for k in keys) else None

    return wait_for(ready, "the members mid-epoch in one pack", timeout=DEADLINE_SECONDS)


def the_pack_worker(workers: Fleet, rows: dict[str, Job]) -> Any:
    [worker_id] = {r.worker_id for r in rows.values()}
    proc = workers.by_pid(worker_pid(worker_id))
    assert proc is not None
    return proc


class TestKillNine:
    def test_a_pack_killed_mid_epoch_resumes_every_member_bit_for_bit(
        self,
        scene: Scene,
    ) -> None:
        epochs = 6
        specs = [member(i, epochs, batch_size=2) for i in range(4)]
        ids = [submit(scene.url, scene.owner_id, spec) for spec in specs]
        slow = Faults(step_delay_ms=2)  # ~0.6 s an epoch: mid-epoch checkpoints to resume from
        with scene.fleet(
            slow,
            FITQ_CHECKPOINT_SECONDS="0.2",
            **PACKED,
        ) as workers:
            first = workers.start()
            running = one_pack_mid_epoch(scene.url, ids)
            proc = the_pack_worker(workers, running)
            assert proc.pid == first.pid
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed = time.monotonic()
            workers.start(Faults())
            wait_for(
                lambda: all(r.attempt == 2 for r in job_rows(scene.url, ids).values()),
                "every member rescued",
                timeout=DEADLINE_SECONDS,
            )
            rescued = time.monotonic() - killed
            wait_for(lambda: all_ended(scene.url, ids), "the jobs to end", timeout=120)
        assert_resumed_exactly(scene.url, scene.store, ids, specs, attempt=2)
        record(
            "kill -9 of a pack worker mid-epoch",
            scene.backend,
            jobs=len(ids),
            workers=2,
            kills=1,
            lost=0,
            duplicated_epochs=0,
            rerun_epochs=executions(scene.url, ids) - len(ids) * epochs,
            rescue=summary([rescued]),
        )

    def test_a_kill_in_the_middle_of_a_boundarys_checkpoints_resumes_every_member(
        self,
        scene: Scene,
    ) -> None:
        epochs = 5
        specs = [member(i, epochs, batch_size=4) for i in range(3)]
        ids = [submit(scene.url, scene.owner_id, spec) for spec in specs]
        with scene.fleet(**PACKED) as workers:
            # Checkpoints 1-3 end epoch 1 (one per member, committed together); 4-6, the
            # end of epoch 2, are written side by side: the 5th is half written when it
            # dies, and no epoch-2 row was committed.
            first = workers.start(Faults(die_in_checkpoint=5))
            assert first.wait(DEADLINE_SECONDS) == -signal.SIGKILL, workers.log_of(first)
            rows = job_rows(scene.url, ids)
            committed = [checkpoints.parse(rows[i].checkpoint_key or "") for i in ids]
            assert [ref.position if ref else None for ref in committed] == [(1, 0)] * 3
            assert [epochs_of(scene.url, i) for i in ids] == [[1], [1], [1]]
            folders = [scene.store.local_path(checkpoints.folder(i)) for i in ids]
            assert any(f is not None and list(f.glob(".tmp-*")) for f in folders), "half-written"
            workers.start(Faults())
            wait_for(lambda: all_ended(scene.url, ids), "the jobs to end", timeout=120)
        assert_resumed_exactly(scene.url, scene.store, ids, specs, attempt=2)
        record(
            "kill -9 in a pack's checkpoints",
            scene.backend,
            jobs=len(ids),
            workers=2,
            kills=1,
            lost=0,
            duplicated_epochs=0,
            resumed_from="the end of epoch 1, each member (epoch 2's files half written)",
        )


class TestPoisonMember:
    def test_a_member_that_always_kills_its_worker_fails_and_its_packmates_succeed(
        self,
        scene: Scene,
    ) -> None:
        doomed = submit(scene.url, scene.owner_id, member(9, epochs=4, batch_size=16))
        others = [submit(scene.url, scene.owner_id, member(i, 3, batch_size=16)) for i in range(3)]
        ids = [doomed, *others]
        deaths = 0
        started = time.monotonic()
        always = Faults(die_at=(doomed, 2))
        with scene.fleet(always, **PACKED) as workers:
            workers.start()  # one at a time: the first claim takes the four as one pack
            while not all_ended(scene.url, ids):
                assert time.monotonic() - started < DEADLINE_SECONDS * 2, "jobs never ended"
                dead = len(workers.procs) - len(workers.alive())
                if dead > deaths:  # a worker died: start another in its place
                    for _ in range(dead - deaths):
                        workers.start()
                    deaths = dead
                time.sleep(POLL_SECONDS)
        rows = job_rows(scene.url, ids)
        assert (rows[doomed].status, rows[doomed].error) == (
            "failed",
            "worker lost on attempts 1–3",
        )
        assert [rows[i].status for i in others] == ["succeeded"] * len(others)
        for row in (rows[i] for i in others):  # killed with it at most twice; alone on a third
            assert row.attempt < 3 or row.pack_id is None, (row.attempt, row.pack_id)
        assert deaths == 3
        record(
            "a packmate always kills its worker",
            scene.backend,
            jobs=len(ids),
            workers=deaths + 1,
            kills=deaths,
            lost=0,
            duplicated_epochs=0,
            outcome="it failed after 3 attempts; its 3 packmates succeeded (last attempts alone)",
            seconds=round(time.monotonic() - started, 1),
        )


class TestSigterm:
    def test_every_member_is_handed_back_and_resumes_bit_for_bit(
        self,
        scene: Scene,
    ) -> None:
        epochs = 5
        specs = [member(i, epochs, batch_size=2) for i in range(3)]
        ids = [submit(scene.url, scene.owner_id, spec) for spec in specs]
        slow = Faults(step_delay_ms=2)
        # A worker process of its own (`fitq worker`'s `serve`): the signal, end to end.
        with scene.fleet(
            slow,
            forked=False,
            FITQ_CHECKPOINT_SECONDS="0.2",
            **PACKED,
        ) as workers:
            workers.wait_started(workers.start())
            proc = the_pack_worker(workers, one_pack_mid_epoch(scene.url, ids))
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            wait_for(
                lambda: all(r.status == "queued" for r in job_rows(scene.url, ids).values()),
                "every member handed back",
                timeout=DEADLINE_SECONDS,
            )
            hand_back = time.monotonic() - sent
            assert proc.wait(DEADLINE_SECONDS) == 0, workers.log_of(proc)
            for row in job_rows(scene.url, ids).values():
                assert (row.status, row.pack_id) == ("queued", None)
                assert row.checkpoint_key is not None  # where it stood: mid-epoch, or between
            workers.start(Faults())
            wait_for(lambda: all_ended(scene.url, ids), "the jobs to end", timeout=120)
        assert_resumed_exactly(scene.url, scene.store, ids, specs, attempt=2)
        record(
            "SIGTERM of a pack worker mid-epoch",
            scene.backend,
            jobs=len(ids),
            workers=2,
            kills=0,
            lost=0,
            duplicated_epochs=0,
            hand_back_ms=round(hand_back * 1000, 1),
            exit_code=0,
        )
