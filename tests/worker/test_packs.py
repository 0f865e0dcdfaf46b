"""Compatible jobs trained as one pack by an in-process worker, against a real database
and file store: each member stays a whole job (its History, model and end its own);
cancel and divergence end one member alone; a job queued later joins at the next
boundary; shutdown hands every member back; a failure inside a round sends the members
back to train solo; FITQ_PACK_MAX=1 trains solo; incompatible jobs never share a pack;
a sweep trial that early termination prunes leaves the pack at that boundary."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch
from sqlalchemy import select

from fitq.service import queue
from fitq.service.db.engine import session_factory, transaction
from fitq.service.db.models import Job, JobEpoch, SweepTrial
from fitq.service.settings import Settings
from fitq.service.sweeps import request as sweep_request
from fitq.service.sweeps import service as sweeps
from fitq.worker.runner import Worker
from tests.support.faults import slow_steps
from tests.support.rows import job_rows
from tests.worker.helpers import (
    WAIT_SECONDS,
    epochs_of,
    iris_spec,
    job_row,
    model_tensors,
    start,
    submit,
    wait_for,
)

FLOAT32_RTOL = 1e-4
"""A member against its solo run: the same math, float32 round-off apart (summed in
another order by the batched GEMMs), over a few epochs of steps."""


LEASE_SECONDS = 1.5
"""A beat every 0.5 s: the rows show each member's progress soon enough to act on."""


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.model_copy(update={"lease_seconds": LEASE_SECONDS, "poll_seconds": 0.05})


def member(i: int, *, learning_rate: float | None = None, **fit: Any) -> dict[str, Any]:
    """A compatible job: the iris net, its own seed and learning rate."""
    spec = iris_spec(seed=i, **{"epochs": 3, "batch_size": 16, **fit})
    spec["compile"]["optimizer"] = {
        "name": "adam",
        "learning_rate": learning_rate or 0.01 + i / 100,
    }
    return spec


def submit_all(settings: Settings, owner_id: str, specs: list[dict[str, Any]]) -> list[str]:
    return [submit(settings.resolved_database_url, owner_id, spec) for spec in specs]


def solo(settings: Settings) -> Settings:
    return settings.model_copy(update={"pack_max": 1})


def history(url: str, job_id: str) -> list[dict[str, float]]:
    with session_factory(url)() as session:
        rows = session.scalars(
            select(JobEpoch.metrics).where(JobEpoch.job_id == job_id).order_by(JobEpoch.epoch)
        )
        return list(rows)


def cancel(url: str, job_id: str) -> None:
    with transaction(url) as session:
        queue.request_cancel(session, job_id)


def assert_same_run(settings: Settings, job_id: str, other_id: str) -> None:
    """Bit for bit: the same weights and the same History."""
    ours, theirs = model_tensors(settings, job_id), model_tensors(settings, other_id)
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
    url = settings.resolved_database_url
    assert history(url, job_id) == history(url, other_id)


def assert_close_run(settings: Settings, job_id: str, other_id: str) -> None:
    """Within float32 round-off: the weights and every History value."""
    ours, theirs = model_tensors(settings, job_id), model_tensors(settings, other_id)
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=FLOAT32_RTOL, atol=1e-5)
    url = settings.resolved_database_url
    for mine, its in zip(history(url, job_id), history(url, other_id), strict=True):
        assert mine.keys() == its.keys()
        for key in mine:
            assert abs(mine[key] - its[key]) <= FLOAT32_RTOL * max(1.0, abs(its[key])), key


def run_in_thread(worker: Worker, max_jobs: int) -> threading.Thread:
    return start(worker, max_jobs)


class TestOnePack:
    def test_compatible_jobs_train_together_each_as_its_solo_run(
        self, settings: Settings, owner_id: str
    ) -> None:
        url = settings.resolved_database_url
        specs = [{**member(i), "test_dataset_id": "iris"} for i in range(3)]
        ids = submit_all(settings, owner_id, specs)
        thread = run_in_thread(Worker(settings, on_step=slow_steps(5)), max_jobs=3)

        def packed() -> dict[str, Job] | None:
            rows = job_rows(url, ids)
            together = all(r.status == "running" and r.pack_size == 3 for r in rows.values())
            return rows if together else None

        running = wait_for(packed, "the three jobs running as a pack of 3")
        assert len({r.pack_id for r in running.values()}) == 1
        thread.join(WAIT_SECONDS)
        assert not thread.is_alive()

        solo_ids = submit_all(settings, owner_id, specs)
        assert Worker(solo(settings)).run(max_jobs=3) == 3
        rows = job_rows(url, ids + solo_ids)
        for job_id, solo_id in zip(ids, solo_ids, strict=True):
            row = rows[job_id]
            assert (row.status, row.pack_size, row.attempt) == ("succeeded", 3, 1), row.error
            assert epochs_of(url, job_id) == [1, 2, 3]
            assert row.test_metrics is not None and rows[solo_id].test_metrics is not None
            assert rows[solo_id].pack_id is None
            assert_close_run(settings, job_id, solo_id)
            for key, value in rows[solo_id].test_metrics.items():
                assert abs(row.test_metrics[key] - value) <= FLOAT32_RTOL * max(1.0, abs(value))

    def test_pack_max_one_trains_each_job_alone(self, settings: Settings, owner_id: str) -> None:
        url = settings.resolved_database_url
        ids = submit_all(settings, owner_id, [member(0), member(1)])
        assert Worker(solo(settings)).run(max_jobs=2) == 2
        rows = job_rows(url, ids)
        assert [(rows[i].status, rows[i].pack_id) for i in ids] == [("succeeded", None)] * 2

    def test_incompatible_jobs_never_share_a_pack(self, settings: Settings, owner_id: str) -> None:
        url = settings.resolved_database_url
        wider = member(1)
        wider["model"]["layers"][0]["units"] = 12  # another structure: another key
        ids = submit_all(settings, owner_id, [member(0), wider, member(2)])
        assert Worker(settings).run(max_jobs=3) == 3
        rows = job_rows(url, ids)
        assert {r.status for r in rows.values()} == {"succeeded"}
        first, other, third = (rows[i] for i in ids)
        assert first.pack_id == third.pack_id and first.pack_size == 2
        assert other.pack_id not in (None, first.pack_id) and other.pack_size == 1


class TestOneMemberEnds:
    def test_a_cancelled_member_stops_and_the_others_are_unchanged(
        self, settings: Settings, fast: Settings, owner_id: str
    ) -> None:
        url = settings.resolved_database_url
        specs = [member(i, epochs=6, batch_size=4) for i in range(3)]
        ids = submit_all(settings, owner_id, specs)
        thread = run_in_thread(Worker(fast, on_step=slow_steps(5)), max_jobs=3)
        wait_for(
            lambda: (row := job_row(url, ids[1])).epoch >= 2 and row.step > 0,
            "the second member mid-epoch",
        )
        cancel(url, ids[1])
        recorded = epochs_of(url, ids[1])  # from the cancel's commit on, none more
        thread.join(WAIT_SECONDS)
        assert not thread.is_alive()
        rows = job_rows(url, ids)
        assert (rows[ids[1]].status, rows[ids[1]].model_key) == ("cancelled", None)
        assert epochs_of(url, ids[1]) == recorded

        without = submit_all(settings, owner_id, [specs[0], specs[2]])
        assert Worker(settings).run(max_jobs=2) == 2
        for job_id, alone in zip([ids[0], ids[2]], without, strict=True):
            assert job_row(url, job_id).status == "succeeded"
            assert_same_run(settings, job_id, alone)

    def test_a_diverging_member_fails_alone_with_where(
        self, settings: Settings, owner_id: str
    ) -> None:
        url = settings.resolved_database_url
        specs = [member(0), member(1, learning_rate=1e30), member(2)]
        ids = submit_all(settings, owner_id, specs)
        assert Worker(settings).run(max_jobs=3) == 3
        bad = job_row(url, ids[1])
        assert bad.status == "failed" and bad.model_key is None
        assert bad.error is not None and "epoch" in bad.error and "step" in bad.error

        without = submit_all(settings, owner_id, [specs[0], specs[2]])
        assert Worker(settings).run(max_jobs=2) == 2
        for job_id, alone in zip([ids[0], ids[2]], without, strict=True):
            assert_same_run(settings, job_id, alone)


class TestJoining:
    def test_a_job_queued_while_a_pack_trains_joins_it_at_the_next_boundary(
        self, settings: Settings, fast: Settings, owner_id: str
    ) -> None:
        url = settings.resolved_database_url
        early, later = member(0, epochs=5, batch_size=4), member(1, epochs=2, batch_size=4)
        [first] = submit_all(settings, owner_id, [early])
        thread = run_in_thread(Worker(fast, on_step=slow_steps(10)), max_jobs=2)
        wait_for(lambda: job_row(url, first).epoch >= 2, "the first job's second epoch")
        [late] = submit_all(settings, owner_id, [later])
        wait_for(lambda: job_row(url, first).pack_size == 2, "the late job to join")
        assert job_row(url, late).pack_id == job_row(url, first).pack_id
        thread.join(WAIT_SECONDS)
        assert not thread.is_alive()
        rows = job_rows(url, [first, late])
        assert {r.status for r in rows.values()} == {"succeeded"}
        assert rows[late].pack_size == 2  # as it left it (the first job may have left alone)

        again = submit_all(settings, owner_id, [early, later])
        assert Worker(solo(settings)).run(max_jobs=2) == 2
        assert_close_run(settings, first, again[0])
        assert_close_run(settings, late, again[1])


class TestHandingBack:
    def test_shutdown_hands_every_member_back_and_the_resumed_pack_is_bit_identical(
        self, settings: Settings, fast: Settings, owner_id: str
    ) -> None:
        url = settings.resolved_database_url
        specs = [member(i, epochs=4, batch_size=4) for i in range(2)]
        reference = submit_all(settings, owner_id, specs)
        assert Worker(settings).run(max_jobs=2) == 2

        ids = submit_all(settings, owner_id, specs)
        first = Worker(fast, worker_id="first", on_step=slow_steps(5))
        thread = run_in_thread(first, max_jobs=2)
        wait_for(
            lambda: all((r.epoch >= 2 and r.step > 0) for r in job_rows(url, ids).values()),
            "both members mid-epoch",
        )
        first.stop.set()
        thread.join(WAIT_SECONDS)
        for row in job_rows(url, ids).values():
            assert (row.status, row.pack_id) == ("queued", None)
            assert row.checkpoint_key is not None

        assert Worker(settings, worker_id="second").run(max_jobs=2) == 2
        for job_id, ref in zip(ids, reference, strict=True):
            row = job_row(url, job_id)
            assert (row.status, row.attempt) == ("succeeded", 2)
            assert epochs_of(url, job_id) == [1, 2, 3, 4]
            assert_same_run(settings, job_id, ref)

    def test_a_failure_inside_a_round_sends_every_member_back_to_train_solo(
        self, settings: Settings, owner_id: str
    ) -> None:
        url = settings.resolved_database_url
        ids = submit_all(settings, owner_id, [member(0), member(1)])

        def out_of_memory(_claim: queue.Claim, _epoch: int, _step: int) -> None:
            raise RuntimeError("CUDA out of memory (a fault of the test)")

        assert Worker(settings, on_step=out_of_memory).run(max_jobs=2) == 2
        for row in job_rows(url, ids).values():
            assert (row.status, row.pack_key, row.pack_id) == ("queued", None, None)
        assert Worker(settings).run(max_jobs=2) == 2
        for row in job_rows(url, ids).values():
            assert (row.status, row.pack_id, row.attempt) == ("succeeded", None, 2)


class TestSweepTrials:
    def test_a_trial_pruned_at_a_rung_leaves_the_pack_succeeded_with_its_model(
        self, settings: Settings, owner_id: str
    ) -> None:
        url = settings.resolved_database_url
        body = {  # (the largest rates first: ASHA, judging each trial as it reaches a rung
            # against those before it, then has worse trials to prune)
            "spec": member(0, epochs=4),
            "parameters": {
                "compile.optimizer.learning_rate": {"values": [3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4]}
            },
            "metric": {"name": "loss", "goal": "minimize"},
            "early_terminate": {"type": "asha", "min_epochs": 1, "reduction_factor": 3},
        }
        with transaction(url) as session:
            sweep_id = sweeps.create(session, owner_id, sweep_request.parse(body)).id
        with session_factory(url)() as session:
            trials = {t.job_id: t for t in session.scalars(select(SweepTrial))}
        assert Worker(settings).run(max_jobs=len(trials)) == len(trials)
        rows = job_rows(url, list(trials))
        with session_factory(url)() as session:
            pruned = {
                t.job_id: t.pruned
                for t in session.scalars(select(SweepTrial).where(SweepTrial.sweep_id == sweep_id))
            }
        assert len({r.pack_id for r in rows.values()}) == 1
        assert any(pruned.values()) and not all(pruned.values())
        for job_id, row in rows.items():
            assert (row.status, row.model_key is not None) == ("succeeded", True), row.error
            ran = epochs_of(url, job_id)
            assert (len(ran) < 4) is pruned[job_id], (ran, pruned[job_id])
