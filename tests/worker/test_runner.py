"""The worker against a real database and a real file store: it trains,
reports every epoch once, fails a bad job without dying, stops at a step
boundary on cancel or shutdown, and a handed-back job resumes exactly."""

from __future__ import annotations

import torch

from fitq.service import queue
from fitq.service.db.engine import transaction
from fitq.service.settings import Settings
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


class TestTraining:
    def test_a_job_trains_to_success_with_every_epoch_once(
        self, settings: Settings, owner_id: str
    ) -> None:
        url = settings.resolved_database_url
        job_id = submit(url, owner_id, {**iris_spec(), "test_dataset_id": "iris"})
        assert Worker(settings).run(max_jobs=1) == 1
        job = job_row(url, job_id)
        assert job.status == "succeeded", job.error
        assert epochs_of(url, job_id) == [1, 2, 3]
        assert job.metrics is not None and {"loss", "accuracy"} <= set(job.metrics)
        assert job.test_metrics is not None and 0.0 <= job.test_metrics["accuracy"] <= 1.0
        tensors = model_tensors(settings, job_id)
        assert tensors["layers.0.kernel"].shape == (4, 16)
        assert tensors["layers.2.bias"].shape == (3,)

    def test_a_diverging_job_fails_with_where_and_the_worker_goes_on(
        self, settings: Settings, owner_id: str
    ) -> None:
        url = settings.resolved_database_url
        bad = iris_spec()
        bad["compile"] = {"optimizer": {"name": "sgd", "learning_rate": 1e30}, "loss": "mse"}
        bad["model"]["layers"][-1] = {"type": "dense", "units": 1}
        bad["dataset_id"] = "diabetes"
        bad["model"]["input_dim"] = 10
        bad["fit"]["normalize"] = False
        bad_id = submit(url, owner_id, bad)
        good_id = submit(url, owner_id, iris_spec())
        assert Worker(settings).run(max_jobs=2) == 2
        failed = job_row(url, bad_id)
        assert failed.status == "failed"
        assert failed.error is not None and "epoch" in failed.error and "step" in failed.error
        assert job_row(url, good_id).status == "succeeded"


class TestStopping:
    def test_cancel_stops_a_running_job_at_a_step_boundary(
        self, settings: Settings, owner_id: str
    ) -> None:
        url = settings.resolved_database_url
        job_id = submit(url, owner_id, iris_spec(epochs=10_000, batch_size=1))
        worker = Worker(settings)
        thread = start(worker)
        wait_for(lambda: job_row(url, job_id).step > 0, "training to start")
        with transaction(url) as session:
            queue.request_cancel(session, job_id)
        thread.join(WAIT_SECONDS)
        assert not thread.is_alive()
        assert job_row(url, job_id).status == "cancelled"

    def test_shutdown_hands_back_and_the_resumed_run_equals_an_uninterrupted_one(
        self, settings: Settings, owner_id: str
    ) -> None:
        url = settings.resolved_database_url
        spec = iris_spec(epochs=6, batch_size=4)
        reference_id = submit(url, owner_id, spec)
        Worker(settings).run(max_jobs=1)
        assert job_row(url, reference_id).status == "succeeded"

        job_id = submit(url, owner_id, spec)
        # ~0.4 s an epoch, so the job is still running when the stop comes
        first = Worker(settings, worker_id="first", on_step=slow_steps(10))
        thread = start(first)
        wait_for(lambda: job_row(url, job_id).epoch >= 2, "two epochs")
        first.stop.set()
        thread.join(WAIT_SECONDS)
        handed_back = job_row(url, job_id)
        assert handed_back.status == "queued"
        assert handed_back.checkpoint_key is not None

        Worker(settings, worker_id="second").run(max_jobs=1)
        resumed = job_row(url, job_id)
        assert (resumed.status, resumed.attempt) == ("succeeded", 2)
        assert epochs_of(url, job_id) == [1, 2, 3, 4, 5, 6]
        ours, reference = model_tensors(settings, job_id), model_tensors(settings, reference_id)
        assert ours.keys() == reference.keys()
        for name in ours:
            assert torch.equal(ours[name], reference[name]), name
        assert resumed.metrics == job_row(url, reference_id).metrics
