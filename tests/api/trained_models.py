"""A succeeded job whose model the engine really trained (a few epochs on iris, with
``normalize``), and its ``test_metrics`` as the worker computes them: the tests of the
model's formats and of evaluate compare against it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from fitq.service.datasets import builtin
from fitq.service.db.models import Job
from fitq.service.spec import parse_spec
from fitq.service.store import ArtifactStore
from fitq.worker.engine import Trainer
from tests.support.specs import spec_factory


class Trained(NamedTuple):
    job: Job
    trainer: Trainer
    x: np.ndarray
    y: np.ndarray


def iris() -> tuple[np.ndarray, np.ndarray]:
    ds = builtin.load_builtin("iris")
    return np.array(ds.x), np.array(ds.y)


def train_job(store: ArtifactStore, job_factory: Callable[..., Job], **spec_args: Any) -> Trained:
    """Train ``spec_factory(**spec_args)`` (normalize on) on iris as the worker does,
    evaluate it on iris for ``test_metrics``, store its file; the succeeded job."""
    raw = spec_factory(fit={"normalize": True, "epochs": 5}, **spec_args)
    spec = parse_spec(raw).model_dump(mode="json")
    x, y = iris()
    trainer = Trainer(spec["model"], spec["compile"], spec["fit"], seed=0, device="cpu")
    trainer.fit(x, y)
    test_metrics = trainer.evaluate(x, y)
    key = f"jobs/{uuid.uuid4().hex}/model.safetensors"
    store.put_bytes(key, trainer.export_safetensors({"fitq_spec": json.dumps(spec)}))
    job = job_factory(
        status="succeeded", spec=spec, model_key=key, test_metrics=test_metrics, name="iris-mlp"
    )
    return Trained(job, trainer, x, y)
