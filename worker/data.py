"""Loading a job's datasets for training: built-ins from scikit-learn's
bundled data, uploads from their canonical arrays in the artifact store."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from fitq.service.datasets import builtin, ingest
from fitq.service.db.models import Dataset
from fitq.service.store import ArtifactStore

Arrays = tuple[np.ndarray, np.ndarray]


class JobArrays(NamedTuple):
    """A job's data: training arrays, and validation and test when the spec names them."""

    x: np.ndarray
    y: np.ndarray
    validation: Arrays | None
    test: Arrays | None


def load_arrays(session: Session, store: ArtifactStore, dataset_id: str) -> Arrays:
    """The (x, y) of a dataset id, as the API resolved it at submission.

    Stored arrays come back read-only (memory-mapped, or the shared
    built-ins); the engine gets private, writable copies."""
    if dataset_id in builtin.BUILTINS:
        ds = builtin.load_builtin(dataset_id)
        x, y = ds.x, ds.y
    else:
        key = session.scalar(select(Dataset.storage_key).where(Dataset.id == dataset_id))
        if key is None:
            raise LookupError(f"dataset {dataset_id} no longer exists")
        x, y = ingest.load_canonical(store, key)
    return np.array(x), np.array(y)


def load_job(session: Session, store: ArtifactStore, spec: dict[str, Any]) -> JobArrays:
    """The arrays of a job's normalized spec (``dataset_id`` and the optional
    ``validation_dataset_id`` and ``test_dataset_id``)."""
    x, y = load_arrays(session, store, spec["dataset_id"])
    validation, test = (
        load_arrays(session, store, spec[key]) if spec.get(key) else None
        for key in ("validation_dataset_id", "test_dataset_id")
    )
    return JobArrays(x, y, validation, test)
