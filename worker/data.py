"""Loading a job's datasets for training: built-ins from scikit-learn's
bundled data, uploads from their canonical arrays in the artifact store."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from fitq.service.datasets import builtin, ingest
from fitq.service.db.models import Dataset
from fitq.service.store import ArtifactStore

Arrays = tuple[np.ndarray, np.ndarray]


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
