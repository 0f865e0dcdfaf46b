"""What kind of task a target column describes, and its canonical form.

The rule, by the target's *type* (so that it is predictable and a user can
steer it by how the file is written), unless ``task`` overrides it:

- strings and booleans → classification. String classes are the sorted
  distinct values (label ``i`` is ``classes[i]``); booleans are
  ``["False", "True"]`` = ``[0, 1]``.
- integers, all ``>= 0`` and ``max + 1 <= MAX_CLASSES`` → classification with
  the labels kept as they are: ``n_classes = max + 1`` and
  ``classes = ["0", …, str(max)]`` (a class may have a count of 0). Other
  integers (a negative value, or a larger maximum) → regression.
- floats → regression, even when every value is whole (``1.0``): write the
  column as integers, or pass ``task="classification"``, to classify.
- a 2-D target (NPZ only): one 1 and zeros elsewhere in every row (one-hot) →
  classification by ``argmax`` with one class per column; otherwise a
  multi-target regression ``[n, k]``. ``[n, 1]`` is treated as ``[n]``.

``task="classification"`` also accepts negative integers and whole floats
(classes are then the sorted distinct values); ``task="regression"`` accepts
any numeric or boolean target and refuses text. Classification labels are
int64, regression targets float32, and at most ``MAX_CLASSES`` classes exist.

A text column of a CSV or Parquet file arrives as :class:`Coded` (codes into
its distinct values, never a Python string per row) and follows the same
rule (:func:`infer_coded_targets`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fitq.service.datasets.shape import TaskKind
from fitq.service.errors import InvalidDataset

MAX_CLASSES = 1000
"""More distinct labels than this is not a classification problem fitq trains."""

Where = Callable[[int], str]
"""Names the 0-based row ``i`` as the user sees it (``"row 7"``, ``"y[6]"``)."""


@dataclass(frozen=True)
class Coded:
    """A text column as codes: row ``i`` is the ``codes[i]``-th distinct value.
    ``values`` lists them unless there are more than ``MAX_CLASSES`` (then only
    their number, ``distinct``, is known); ``first`` is row 0's value."""

    codes: np.ndarray
    values: list[str] | None
    distinct: int
    first: str


@dataclass(frozen=True)
class Targets:
    """A target column in canonical form."""

    y: np.ndarray
    kind: TaskKind
    n_classes: int | None = None
    classes: list[str] | None = None
    class_counts: list[int] | None = None

    @property
    def target_dim(self) -> int:
        return 1 if self.y.ndim == 1 else int(self.y.shape[1])


def first_nonfinite_row(values: np.ndarray, rows_per_chunk: int = 1 << 16) -> int | None:
    """The first row holding NaN or ±Inf, or None; bounded extra memory."""
    if values.dtype.kind != "f":
        return None
    for start in range(0, len(values), rows_per_chunk):
        bad = ~np.isfinite(values[start : start + rows_per_chunk])
        if bad.ndim > 1:
            bad = bad.any(axis=tuple(range(1, bad.ndim)))
        hits = np.flatnonzero(bad)
        if hits.size:
            return start + int(hits[0])
    return None


def infer_targets(values: np.ndarray, *, name: str, where: Where, task: TaskKind | None) -> Targets:
    """The canonical targets of ``values`` (1-D or 2-D, no missing values) by the rule above."""
    if task not in (None, "classification", "regression"):
        raise InvalidDataset(f"task must be 'classification' or 'regression', not {task!r}")
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    kind = values.dtype.kind
    if kind not in "biufUO":
        raise InvalidDataset(f"{name} has unsupported type {values.dtype}")
    if values.ndim == 2:
        return _two_dimensional(values, name=name, where=where, task=task)
    if kind in "UO":
        if task == "regression":
            raise InvalidDataset(
                f"{name} holds text ({where(0)}: {_show(values[0])}); "
                "a regression target must be numeric"
            )
        return _by_distinct(values, name=name)
    if kind == "b":
        if task == "regression":
            return Targets(values.astype(np.float32), "regression")
        return _counted(values.astype(np.int64), ["False", "True"])
    _check_finite(values, name=name, where=where)
    if task == "regression" or (task is None and kind == "f"):
        return Targets(_float32(values, name=name, where=where), "regression")
    if kind == "f":
        whole = values == np.round(values)
        if not whole.all():
            i = int(np.flatnonzero(~whole)[0])
            raise InvalidDataset(
                f"{name} has a non-integer value at {where(i)} ({_show(values[i])}); "
                "classification needs whole-number or text labels"
            )
    low, high = int(values.min()), int(values.max())
    if low >= 0 and high < MAX_CLASSES:
        labels = values.astype(np.int64)
        return _counted(labels, [str(c) for c in range(high + 1)])
    if task is None:
        return Targets(_float32(values, name=name, where=where), "regression")
    return _by_distinct(values.astype(np.int64), name=name)


def infer_coded_targets(coded: Coded, *, name: str, where: Where, task: TaskKind | None) -> Targets:
    """The classification targets of a text column (text never regresses)."""
    if task == "regression":
        raise InvalidDataset(
            f"{name} holds text ({where(0)}: {coded.first!r}); a regression target must be numeric"
        )
    if coded.values is None or coded.distinct > MAX_CLASSES:
        raise InvalidDataset(
            f"{name} has {coded.distinct} distinct values; classification allows at most "
            f"{MAX_CLASSES} classes"
        )
    present = np.bincount(coded.codes, minlength=coded.distinct) > 0
    order = sorted(np.flatnonzero(present).tolist(), key=coded.values.__getitem__)
    label_of = np.full(coded.distinct, -1, dtype=np.int64)
    label_of[order] = np.arange(len(order))
    return _counted(label_of[coded.codes], [coded.values[i] for i in order])


def _two_dimensional(
    values: np.ndarray, *, name: str, where: Where, task: TaskKind | None
) -> Targets:
    if values.dtype.kind in "UO":
        raise InvalidDataset(f"{name} is 2-D text {values.shape}; targets must be numeric")
    _check_finite(values, name=name, where=where)
    k = int(values.shape[1])
    one_hot = bool(((values == 0) | (values == 1)).all() and (values.sum(axis=1) == 1).all())
    if task != "regression" and one_hot:
        if k > MAX_CLASSES:
            raise InvalidDataset(f"{name} is one-hot over {k} classes; at most {MAX_CLASSES}")
        return _counted(values.argmax(axis=1).astype(np.int64), [str(c) for c in range(k)])
    if task == "classification":
        raise InvalidDataset(
            f"{name} has shape {values.shape} but is not one-hot (one 1 per row, zeros "
            "elsewhere); a 2-D classification target must be one-hot"
        )
    return Targets(_float32(values, name=name, where=where), "regression")


def _by_distinct(values: np.ndarray, *, name: str) -> Targets:
    """Classes are the sorted distinct values; label i is classes[i]."""
    try:
        distinct, labels = np.unique(values, return_inverse=True)
    except TypeError as e:  # an object array mixing types that do not sort together
        raise InvalidDataset(f"{name} mixes values of different types") from e
    if len(distinct) > MAX_CLASSES:
        raise InvalidDataset(
            f"{name} has {len(distinct)} distinct values; classification allows at most "
            f"{MAX_CLASSES} classes"
        )
    return _counted(labels.reshape(-1).astype(np.int64), [str(v) for v in distinct.tolist()])


def _counted(labels: np.ndarray, classes: list[str]) -> Targets:
    counts = np.bincount(labels, minlength=len(classes))
    return Targets(
        np.ascontiguousarray(labels, dtype=np.int64),
        "classification",
        n_classes=len(classes),
        classes=classes,
        class_counts=[int(c) for c in counts],
    )


def _check_finite(values: np.ndarray, *, name: str, where: Where) -> None:
    i = first_nonfinite_row(values)
    if i is not None:
        raise InvalidDataset(f"{where(i)}, {name}: NaN or infinite value; targets must be finite")


def _float32(values: np.ndarray, *, name: str, where: Where) -> np.ndarray:
    with np.errstate(over="ignore"):  # overflow becomes ±inf, refused just below
        out = np.ascontiguousarray(values, dtype=np.float32)
    i = first_nonfinite_row(out)
    if i is not None:
        raise InvalidDataset(f"{where(i)}, {name}: value too large for float32 (beyond ±3.4e38)")
    return out


def _show(value: object) -> str:
    """A cell for a message: the Python value, not numpy's repr of it."""
    item = getattr(value, "item", None)
    return repr(item() if callable(item) else value)
