"""Checkpoints in the store: checksummed, resumed from the newest sound one
(falling back past a damaged one), pruned to the last two, and a stale
attempt's files never taken for the current attempt's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from sqlalchemy import select

from fitq.service.db.engine import session_factory
from fitq.service.db.models import ExecutionLog
from fitq.service.settings import Settings
from fitq.service.store import ArtifactStore
from fitq.worker import checkpoints
from fitq.worker.runner import Worker
from tests.support.faults import slow_steps
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

SPEC = iris_spec(epochs=6, batch_size=4)
SLOW_STEPS = slow_steps(10)  # ~0.4 s an epoch: still running when stopped


def hand_back_after(settings: Settings, job_id: str, epochs: int) -> None:
    """Run the job on a worker and stop it (SIGTERM's path) once ``epochs`` are recorded."""
    url = settings.resolved_database_url
    worker = Worker(settings, worker_id="first", on_step=SLOW_STEPS)
    thread = start(worker)
    wait_for(lambda: job_row(url, job_id).epoch >= epochs, f"{epochs} epochs")
    worker.stop.set()
    thread.join(WAIT_SECONDS)
    assert job_row(url, job_id).status == "queued"


def assert_same_weights(settings: Settings, job_id: str, reference_id: str) -> None:
    ours, reference = model_tensors(settings, job_id), model_tensors(settings, reference_id)
    assert ours.keys() == reference.keys()
    for name in ours:
        assert torch.equal(ours[name], reference[name]), name


def checkpoint_files(store: ArtifactStore, job_id: str) -> list[str]:
    return [ref.key for ref in checkpoints.listing(store, job_id)]


class TestResume:
    def test_a_truncated_newest_checkpoint_is_skipped_for_the_one_before(
        self, settings: Settings, owner_id: str, store: ArtifactStore
    ) -> None:
        url = settings.resolved_database_url
        reference_id = submit(url, owner_id, SPEC)
        Worker(settings).run(max_jobs=1)
        job_id = submit(url, owner_id, SPEC)
        hand_back_after(settings, job_id, 2)
        newest = job_row(url, job_id).checkpoint_key
        assert newest is not None
        path = store.local_path(newest)
        assert path is not None
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

        Worker(settings, worker_id="second").run(max_jobs=1)
        job = job_row(url, job_id)
        assert job.status == "succeeded", job.error
        assert epochs_of(url, job_id) == [1, 2, 3, 4, 5, 6]
        assert_same_weights(settings, job_id, reference_id)

    def test_every_damaged_checkpoint_means_a_fresh_start_not_a_failure(
        self, settings: Settings, owner_id: str, store: ArtifactStore
    ) -> None:
        url = settings.resolved_database_url
        reference_id = submit(url, owner_id, SPEC)
        Worker(settings).run(max_jobs=1)
        job_id = submit(url, owner_id, SPEC)
        hand_back_after(settings, job_id, 2)
        for key in checkpoint_files(store, job_id):
            path = store.local_path(key)
            assert path is not None
            path.write_bytes(b"\0" * 64)

        Worker(settings, worker_id="second").run(max_jobs=1)
        assert job_row(url, job_id).status == "succeeded"
        assert epochs_of(url, job_id) == [1, 2, 3, 4, 5, 6]
        assert_same_weights(settings, job_id, reference_id)


class TestFiles:
    def test_keys_carry_the_position_the_attempt_and_a_checksum(
        self, settings: Settings, owner_id: str, store: ArtifactStore
    ) -> None:
        url = settings.resolved_database_url
        job_id = submit(url, owner_id, SPEC)
        hand_back_after(settings, job_id, 2)
        key = job_row(url, job_id).checkpoint_key
        assert key is not None
        ref = checkpoints.parse(key)
        assert ref is not None and ref.attempt == 1 and ref.sha256 is not None
        assert checkpoints.verify(ref, store.get_bytes(key))
        assert not checkpoints.verify(ref, store.get_bytes(key) + b"x")

    def test_only_the_last_two_are_kept_while_training_and_none_after_success(
        self, settings: Settings, owner_id: str, store: ArtifactStore
    ) -> None:
        url = settings.resolved_database_url
        job_id = submit(url, owner_id, SPEC)
        hand_back_after(settings, job_id, 4)
        kept = checkpoint_files(store, job_id)
        assert len(kept) <= 2 and job_row(url, job_id).checkpoint_key in kept
        Worker(settings, worker_id="second").run(max_jobs=1)
        assert job_row(url, job_id).status == "succeeded"
        assert checkpoint_files(store, job_id) == []

    def test_listing_ignores_temporary_and_foreign_files(self, store: ArtifactStore) -> None:
        folder = store.local_path("jobs/j/checkpoints/x")
        assert folder is not None
        folder.parent.mkdir(parents=True)
        for name in (".tmp-abc.part", "notes.txt", "00001-0000000-a1.safetensors"):
            Path(folder.parent, name).write_bytes(b"")
        assert [r.key for r in checkpoints.listing(store, "j")] == [
            "jobs/j/checkpoints/00001-0000000-a1.safetensors"
        ]


class TestExecutionLog:
    def test_every_epoch_run_is_logged_with_its_attempt(
        self, settings: Settings, owner_id: str
    ) -> None:
        url = settings.resolved_database_url
        job_id = submit(url, owner_id, iris_spec(epochs=2))
        Worker(settings, worker_id="w").run(max_jobs=1)
        with session_factory(url)() as session:
            rows: list[Any] = session.execute(
                select(ExecutionLog.attempt, ExecutionLog.epoch, ExecutionLog.worker_id).where(
                    ExecutionLog.job_id == job_id
                )
            ).all()
        assert sorted(map(tuple, rows)) == [(1, 1, "w"), (1, 2, "w")]
