"""Loading a job's datasets for training: built-ins from scikit-learn's
bundled data, uploads from their canonical arrays in the artifact store."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.datasets import builtin, ingest
from service.db.models import Dataset
from service.store import ArtifactStore

Arrays = tuple[np.ndarray, np.ndarray]


def load_arrays(session: Session, store: ArtifactStore, dataset_id: str) -> Arrays:
    """The (x, y) of a dataset id, as the API resolved it at submission."""
    if dataset_id in builtin.BUILTINS:
        ds = builtin.load_builtin(dataset_id)
        return ds.x, ds.y
    storage_key = session.scalar(select(Dataset.storage_key).where(Dataset.id == dataset_id))
    if storage_key is None:
        raise LookupError(f"dataset {dataset_id} no longer exists")
    return ingest.load_canonical(store, storage_key)
