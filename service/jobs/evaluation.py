"""Keras' ``evaluate`` of a succeeded job's model on a stored dataset
(``POST /v1/jobs/{id}/evaluate``), as often as asked after training.

The dataset goes through the owner check (another owner's id is a 404) and the
check a test dataset gets at submission (features, classes: a 422 naming the
problem), then the engine's own ``Trainer.evaluate`` runs on the trained weights,
so the numbers are those the worker reports as ``test_metrics`` for the same
data. torch is imported only inside the call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from fitq.service import spec as specs
from fitq.service.datasets import builtin, ingest
from fitq.service.datasets import service as datasets
from fitq.service.db.models import Dataset, Job
from fitq.service.errors import Conflict, InvalidSpec
from fitq.service.jobs import prediction
from fitq.service.spec.against_data import check_evaluation_data
from fitq.service.store import ArtifactStore

DATASET_LOC = ["body", "dataset_id"]


def evaluate(
    session: Session, store: ArtifactStore, job: Job, owner_id: str, dataset_id: str
) -> dict[str, float]:
    """``{"loss": …, <metric>: …}`` of ``job``'s trained model on ``dataset_id``
    (a built-in or one of ``owner_id``'s uploads); 409 before the job succeeded."""
    data = prediction.model_bytes(store, job)  # 409 first: no model, nothing to check
    spec = specs.up_to_date(job.spec)
    try:
        parsed = specs.parse_spec(spec)
    except InvalidSpec as exc:  # stored before an upgrade, refused by today's rules
        raise Conflict(f"job {job.id}'s spec no longer validates: {exc.message}") from None
    row = datasets.get(session, owner_id, dataset_id, loc=DATASET_LOC)
    check_evaluation_data(parsed, datasets.shape_of(row), DATASET_LOC)
    x, y = _arrays(store, row)
    return _engine_evaluate(spec, data, x, y)


def _arrays(store: ArtifactStore, row: Dataset) -> tuple[np.ndarray, np.ndarray]:
    if datasets.is_builtin(row):
        ds = builtin.load_builtin(row.id)
        return np.asarray(ds.x), np.asarray(ds.y)
    return ingest.load_canonical(store, row.storage_key)


def _engine_evaluate(
    spec: dict[str, Any], model_file: bytes, x: np.ndarray, y: np.ndarray
) -> dict[str, float]:
    """The worker's evaluate on the stored weights: a Trainer for the spec on the
    CPU with the file's weights; the stored normalization applied to ``x`` as the
    trainer applies its own (``(x − mean) / std`` in float32)."""
    import safetensors.torch  # torch only when an evaluation is asked
    import torch

    from fitq.worker.engine import Trainer

    tensors = safetensors.torch.load(model_file)
    trainer = Trainer(
        model=spec["model"],
        compile=spec["compile"],
        fit={**spec["fit"], "normalize": False},  # the stored statistics, below
        seed=int(spec.get("seed", 0)),
        device="cpu",
        cuda_graph=False,
    )
    with torch.no_grad():
        trainer.model.load_named_tensors(tensors)
    features = torch.from_numpy(np.array(x, dtype=np.float32))
    mean, std = tensors.get("normalization.mean"), tensors.get("normalization.std")
    if mean is not None and std is not None:
        features = (features - mean).div_(std)
    return trainer.evaluate(features.numpy(), np.array(y))
