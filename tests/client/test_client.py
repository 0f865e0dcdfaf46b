"""The Python client against a live ``fitq up``: Keras' fit on digits moved
to fitq (upload arrays, submit, follow, History), compared with the API's
own ``GET /v1/jobs/{id}/metrics``; then predict and download; a sweep ranked,
its best trial a job to predict with."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from fitq.service.client import ApiError, Client, History, JobFailed
from tests.support.stack import Stack, fitq_up

pytestmark = pytest.mark.slow

SPEC = {
    "model": {
        "input_dim": 64,
        "layers": [
            {"type": "dense", "units": 64, "activation": "relu"},
            {"type": "dense", "units": 10, "activation": "softmax"},
        ],
    },
    "compile": {
        "optimizer": "adam",
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy"],
    },
    "fit": {"normalize": True},
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with fitq_up(tmp_path_factory.mktemp("client")) as running:
        yield running


def test_fit_on_digits_returns_the_history_the_api_reports(live: Stack) -> None:
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.2, stratify=digits.target, random_state=0
    )
    printed = io.StringIO()
    with Client(live.url, live.key) as client:
        history = client.fit(
            SPEC,
            x_train,
            y_train,
            epochs=6,
            validation_split=0.1,
            test_data=(x_test, y_test),
            verbose=0,
        )
        job = history.job
        job.wait(progress=True, out=printed)  # a finished job: the whole stream again
        api = httpx.get(
            f"{live.url}/v1/jobs/{job.id}/metrics",
            headers={"Authorization": f"Bearer {live.key}"},
        ).json()["epochs"]
        probabilities = job.predict(x_test)
        model = job.download()
        job_history = job.history

    assert isinstance(history, History) and history.epoch == list(range(6))
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    for name, values in history.history.items():
        assert values == [row[name] for row in api]
    assert history.history["val_accuracy"][-1] > 0.85
    assert job["status"] == "succeeded" and job.test_metrics["accuracy"] > 0.85
    assert job_history == history.history
    lines = printed.getvalue().splitlines()
    assert len(lines) == 6 and lines[0].startswith("Epoch 1/6 - ") and "val_loss: " in lines[0]

    assert probabilities.shape == (len(x_test), 10)
    assert (probabilities.argmax(axis=1) == y_test).mean() > 0.85
    assert load_safetensors(model)["layers.1.kernel"].shape == (64, 10)


def test_upload_a_file_submit_on_a_dataset_and_a_cancelled_fit_raises(
    live: Stack, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "blobs.csv"
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] > 0).astype(int)
    np.savetxt(
        path, np.column_stack([x, y]), delimiter=",", header="a,b,c,y", comments="", fmt="%g"
    )
    with Client(live.url, live.key) as client:
        ds = client.upload_dataset(path, name="blobs")
        assert (ds["n_rows"], ds["n_features"]) == (60, 3)
        spec = {
            **SPEC,
            "model": {
                "input_dim": 3,
                "layers": [{"type": "dense", "units": 2, "activation": "softmax"}],
            },
            "fit": {"epochs": 2},
        }
        job = client.submit(spec, dataset=ds["id"])
        assert job.wait().status == "succeeded"
        assert len(job.history["loss"]) == 2

        job = client.submit({**spec, "fit": {"epochs": 5000, "batch_size": 1}}, dataset=ds["id"])
        job.cancel()
        with pytest.raises(JobFailed, match="cancelled"):
            raise JobFailed(job.wait())


def test_a_sweep_ranks_its_trials_and_its_best_is_a_job(live: Stack) -> None:
    spec = {**SPEC, "fit": {"normalize": True, "epochs": 3, "validation_split": 0.2}}
    parameters = {"compile.optimizer.learning_rate": {"values": [0.003, 0.0001]}}
    printed = io.StringIO()
    with Client(live.url, live.key) as client:
        sweep = client.sweep(
            spec, parameters, metric="val_accuracy", dataset="digits", name="client-sweep"
        )
        assert sweep["metric"] == {"name": "val_accuracy", "goal": "maximize"}  # inferred
        assert sweep.wait(progress=True, out=printed, timeout=300) is sweep
        trials = sweep.trials()
        table = sweep.table()
        best = sweep.best
        assert best is not None
        probabilities = best.predict(load_digits().data[:3])
        assert sweep.id in [s["id"] for s in client.sweeps()]
        jobs = client.jobs(sweep=sweep.id)
        cancelled = sweep.cancel()  # nothing left to cancel: it stays as it ended

    assert sweep.status == "succeeded" and cancelled.status == "succeeded"
    assert [t["value"] for t in trials] == sorted((t["value"] for t in trials), reverse=True)
    assert best.id == trials[0]["job_id"] == sweep["best"]["job_id"]
    assert best["sweep_id"] == sweep.id and best.status == "succeeded"
    assert probabilities.shape == (3, 10)
    assert [row["rank"] for row in table] == [1, 2]
    assert (
        table[0]["compile.optimizer.learning_rate"]
        == trials[0]["params"]["compile.optimizer.learning_rate"]
    )
    assert table[0]["val_accuracy"] == trials[0]["value"]
    assert {j["id"] for j in jobs} == {t["job_id"] for t in trials}
    lines = printed.getvalue().splitlines()
    assert lines[-1].startswith(f"sweep {sweep.id} succeeded: 2/2 ended · best val_accuracy")


def test_a_sweep_refused_raises_the_api_error(live: Stack) -> None:
    with Client(live.url, live.key) as client, pytest.raises(ApiError) as refused:
        client.sweep(SPEC, {"fit.epochs": {"values": [1, 0]}}, metric="loss", dataset="digits")
    assert refused.value.status_code == 422 and "fit.epochs=0" in str(refused.value)
