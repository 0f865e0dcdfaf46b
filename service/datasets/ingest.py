"""Dataset ingest: an uploaded file on local disk → the canonical, memory-mappable form.

``ingest_file`` is pure: it reads the file, refuses anything that is not a
usable dataset with ``InvalidDataset`` (saying what and where), and returns an
``IngestedDataset``:

- ``x``: float32 ``[n, f]``, C-contiguous, every value finite;
- ``y``: int64 ``[n]`` for classification (labels ``0 .. n_classes-1``),
  float32 ``[n]`` or ``[n, k]`` for regression.

``save_canonical`` writes it to the artifact store as ``x.npy``, ``y.npy``
(never pickled) and ``meta.json`` — last, so a prefix with ``meta.json`` is
complete — and ``load_canonical`` maps it back.

The pieces, one module each: ``formats`` decides the format by the file's
bytes and checks the client's file name against them (a mismatch is
refused); ``tabular`` reads CSV/TSV and ``parquet`` Parquet (header required,
``label`` names the target column, default the last; rows in messages are
numbered as the user sees them); ``npz`` reads arrays ``x`` and ``y`` without
ever unpickling; ``targets`` holds the rule that says classification or
regression (by the target's type: text/booleans/non-negative integers
classify, floats regress; ``task`` overrides).

Memory: each reader counts what the file decodes to before it allocates it
and asks ``limits.Limits`` (features, cells, decoded bytes), then decodes into
one float32 matrix a chunk at a time. Ingest runs in the API process, which so
holds about the decoded dataset and never more than ``FITQ_MAX_DATASET_BYTES``
of it plus a read buffer, whatever a file claims or expands to.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fitq.service.datasets import formats, npz, parquet, tabular
from fitq.service.datasets.limits import NO_LIMITS, Limits
from fitq.service.datasets.shape import DataShape, TaskKind
from fitq.service.datasets.targets import Coded, Targets, infer_coded_targets, infer_targets
from fitq.service.errors import InvalidDataset
from fitq.service.store import ArtifactStore, keys

META_VERSION = 1
HASH_CHUNK_BYTES = 1 << 20


@dataclass
class IngestedDataset:
    """A dataset in canonical form, with what the API reports about it."""

    x: np.ndarray
    y: np.ndarray
    format: str
    feature_names: list[str]
    label: str | None
    classes: list[str] | None
    class_counts: list[int] | None
    shape: DataShape

    def meta(self) -> dict[str, Any]:
        """What ``meta.json`` holds (JSON-ready)."""
        return {
            "version": META_VERSION,
            "format": self.format,
            "feature_names": self.feature_names,
            "label": self.label,
            "classes": self.classes,
            "class_counts": self.class_counts,
            "shape": asdict(self.shape),
            "x": {"dtype": str(self.x.dtype), "shape": list(self.x.shape)},
            "y": {"dtype": str(self.y.dtype), "shape": list(self.y.shape)},
        }


def ingest_file(
    path: Path,
    *,
    filename: str | None = None,
    label: str | None = None,
    task: TaskKind | None = None,
    limits: Limits = NO_LIMITS,
) -> IngestedDataset:
    """Read the upload at ``path`` into canonical form, or raise ``InvalidDataset``.

    ``filename`` is the client's name for the file, a hint checked against the
    bytes and never used as a path. ``label`` names the target column of a
    tabular file (default the last column). ``task`` forces classification or
    regression instead of the rule in ``targets``. ``limits`` bound what the
    file may decode to, checked before it is decoded.
    """
    path = Path(path)
    fmt = formats.detect_format(path, filename)
    if fmt == "npz":
        if label is not None:
            raise InvalidDataset(
                "label names a column of a CSV, TSV or Parquet file; an NPZ's targets are "
                "its array 'y'",
                loc=["body", "label"],
            )
        arrays = npz.read_npz(path, limits)
        x = arrays.x
        targets = infer_targets(arrays.y, name="y", where=lambda i: f"y[{i}]", task=task)
        feature_names = [f"x{j}" for j in range(x.shape[1])]
        label_name = None
    else:
        if fmt == "parquet":
            table = parquet.read_parquet(path, label=label, limits=limits)
        else:
            delimiter = "\t" if fmt == "tsv" else ","
            table = tabular.read_text(path, delimiter=delimiter, label=label, limits=limits)
        x = table.x
        name = f"label column {table.label!r}"
        if isinstance(table.y, Coded):
            targets = infer_coded_targets(table.y, name=name, where=table.where, task=task)
        else:
            targets = infer_targets(table.y, name=name, where=table.where, task=task)
        feature_names, label_name = table.feature_names, table.label
    return _dataset(x, targets, fmt, feature_names, label_name)


def _dataset(
    x: np.ndarray, targets: Targets, fmt: str, feature_names: list[str], label: str | None
) -> IngestedDataset:
    shape = DataShape(
        n_rows=int(x.shape[0]),
        n_features=int(x.shape[1]),
        kind=targets.kind,
        n_classes=targets.n_classes,
        target_dim=targets.target_dim,
    )
    return IngestedDataset(
        x=np.ascontiguousarray(x, dtype=np.float32),
        y=targets.y,
        format=fmt,
        feature_names=feature_names,
        label=label,
        classes=targets.classes,
        class_counts=targets.class_counts,
        shape=shape,
    )


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of the file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def save_canonical(ds: IngestedDataset, store: ArtifactStore, prefix: str) -> None:
    """Write ``x.npy``, ``y.npy`` and then ``meta.json`` under ``prefix`` (``keys.dataset``)."""
    store.save_array(keys.dataset_x(prefix), ds.x)
    store.save_array(keys.dataset_y(prefix), ds.y)
    store.put_bytes(keys.dataset_meta(prefix), json.dumps(ds.meta(), indent=1).encode())


def load_canonical(store: ArtifactStore, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of a saved dataset, memory-mapped read-only where the store is local."""
    return store.load_array(keys.dataset_x(prefix)), store.load_array(keys.dataset_y(prefix))


def load_meta(store: ArtifactStore, prefix: str) -> dict[str, Any]:
    """The ``meta.json`` of a saved dataset (``IngestedDataset.meta()``)."""
    meta: dict[str, Any] = json.loads(store.get_bytes(keys.dataset_meta(prefix)))
    return meta


def is_saved(store: ArtifactStore, prefix: str) -> bool:
    """Whether a complete canonical form is under ``prefix`` (its ``meta.json`` is written last)."""
    return store.exists(keys.dataset_meta(prefix))
