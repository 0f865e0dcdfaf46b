"""`fitq up` as a user runs it: a real process on a real port, the digits
CSV uploaded over HTTP, the reference model trained, the model downloaded."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from fitq.service.client import Client
from tests.support.specs import digits_spec
from tests.support.stack import fitq_up

pytestmark = pytest.mark.slow

REFERENCE_SPEC = digits_spec(hidden=(128, 64), fit={"epochs": 10})
"""The reference model: 64 → 128 relu → 64 relu → 10 softmax, on the uploaded CSV."""


def write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    header = ",".join([f"pixel{i}" for i in range(x.shape[1])] + ["digit"])
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header=header, comments="", fmt="%g")
    return path


def forward(tensors: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The downloaded model applied by hand: normalization, then dense layers."""
    h = (x - tensors["normalization.mean"]) / tensors["normalization.std"]
    for i in range(3):
        h = h @ tensors[f"layers.{i}.kernel"] + tensors[f"layers.{i}.bias"]
        if i < 2:
            h = np.maximum(h, 0)
    return h  # logits; argmax equals the softmax's


def test_fitq_up_trains_the_reference_model_end_to_end(tmp_path: Path) -> None:
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.2, stratify=digits.target, random_state=0
    )
    train_csv = write_csv(tmp_path / "train.csv", x_train, y_train)
    test_csv = write_csv(tmp_path / "test.csv", x_test, y_test)
    with fitq_up(tmp_path) as live:
        log = live.apis[0].log
        with Client(live.url, live.key) as client:
            train = client.upload_dataset(train_csv, name="digits-train")
            test = client.upload_dataset(test_csv, name="digits-test")
            assert (train["n_rows"], train["n_features"]) == (len(x_train), 64)
            job = client.submit(
                {**REFERENCE_SPEC, "dataset_id": train["id"], "test_dataset_id": test["id"]}
            )
            final = client.wait(job["id"], timeout=300)
            assert final["status"] == "succeeded", final["error"]

            history = client.epochs(job["id"])
            assert [row["epoch"] for row in history] == list(range(1, 11))
            for row in history:
                assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(row)
            assert final["test_metrics"]["accuracy"] >= 0.93

            model_bytes = client.download_model(job["id"])
            tensors = load_safetensors(model_bytes)
            answer = client.predict(job["id"], x_test[:50].tolist())
    ours = forward(tensors, x_test[:50].astype(np.float32))
    assert answer["predictions"] == ours.argmax(axis=1).tolist()
    probabilities = np.asarray(answer["probabilities"])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert probabilities.argmax(axis=1).tolist() == answer["predictions"]
    assert json.loads(safetensors_metadata(model_bytes)["fitq_spec"])["model"]["input_dim"] == 64
    assert "Traceback" not in log.read_text()


def safetensors_metadata(blob: bytes) -> dict[str, str]:
    header_len = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + header_len])["__metadata__"]


def children_of(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def test_sigterm_to_fitq_up_stops_its_worker_too(tmp_path: Path) -> None:
    with fitq_up(tmp_path) as live:
        proc = live.apis[0].proc
        [worker] = children_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    deadline = time.monotonic() + 30
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{worker}").exists(), "the worker outlived fitq up"
