"""Built-in datasets: scikit-learn's bundled data, no download.

``digits``, ``iris``, ``wine``, ``breast_cancer`` are classification (labels
as scikit-learn numbers them, ``classes`` from its ``target_names``);
``diabetes`` is regression (scikit-learn's default, mean-centred and scaled
features). Each is loaded once per process and kept read-only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import datasets as sk

from fitq.service.datasets.ingest import IngestedDataset
from fitq.service.datasets.shape import DataShape, TaskKind
from fitq.service.errors import NotFound


@dataclass(frozen=True)
class Builtin:
    """How to load one built-in dataset."""

    name: str
    description: str
    kind: TaskKind
    loader: Callable[[], Any]


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin(
            "digits", "8×8 images of handwritten digits, 0–9", "classification", sk.load_digits
        ),
        Builtin(
            "iris",
            "Fisher's iris flowers: 4 measurements, 3 species",
            "classification",
            sk.load_iris,
        ),
        Builtin(
            "wine", "Chemical analysis of wines from 3 cultivars", "classification", sk.load_wine
        ),
        Builtin(
            "breast_cancer",
            "Wisconsin diagnostic breast cancer: malignant or benign",
            "classification",
            sk.load_breast_cancer,
        ),
        Builtin(
            "diabetes",
            "Disease progression one year after baseline (scaled features)",
            "regression",
            sk.load_diabetes,
        ),
    )
}


@dataclass(frozen=True)
class BuiltinInfo:
    """What the API lists about a built-in dataset."""

    name: str
    description: str
    n_rows: int
    n_features: int
    kind: TaskKind
    classes: list[str] | None
    class_counts: list[int] | None
    feature_names: list[str]
    shape: DataShape
    label: str = "target"


def _get(name: str) -> Builtin:
    try:
        return BUILTINS[name]
    except KeyError:
        raise NotFound(f"no built-in dataset {name!r}; there are: {', '.join(BUILTINS)}") from None


@functools.cache
def load_builtin(name: str) -> IngestedDataset:
    """The built-in dataset ``name`` in canonical form (cached; arrays are read-only)."""
    spec = _get(name)
    bunch = spec.loader()
    x = np.ascontiguousarray(bunch.data, dtype=np.float32)
    feature_names = [str(f) for f in getattr(bunch, "feature_names", [])] or [
        f"x{j}" for j in range(x.shape[1])
    ]
    n_classes: int | None = None
    classes: list[str] | None = None
    counts: list[int] | None = None
    if spec.kind == "classification":
        y = np.ascontiguousarray(bunch.target, dtype=np.int64)
        n_classes = int(y.max()) + 1
        names = getattr(bunch, "target_names", None)
        classes = [str(c) for c in (names if names is not None else range(n_classes))]
        counts = [int(c) for c in np.bincount(y, minlength=n_classes)]
    else:
        y = np.ascontiguousarray(bunch.target, dtype=np.float32)
    x.setflags(write=False)
    y.setflags(write=False)
    shape = DataShape(
        n_rows=int(x.shape[0]), n_features=int(x.shape[1]), kind=spec.kind, n_classes=n_classes
    )
    return IngestedDataset(
        x=x,
        y=y,
        format="builtin",
        feature_names=feature_names,
        label="target",
        classes=classes,
        class_counts=counts,
        shape=shape,
    )


@functools.cache
def builtin_info(name: str) -> BuiltinInfo:
    """A description of ``name`` for listings (computed by loading it once)."""
    spec = _get(name)
    ds = load_builtin(name)
    return BuiltinInfo(
        name=name,
        description=spec.description,
        n_rows=ds.shape.n_rows,
        n_features=ds.shape.n_features,
        kind=ds.shape.kind,
        classes=ds.classes,
        class_counts=ds.class_counts,
        feature_names=ds.feature_names,
        shape=ds.shape,
    )
