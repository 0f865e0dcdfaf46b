"""What a spec needs to know about a dataset to be checked against it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TaskKind = Literal["classification", "regression"]


@dataclass(frozen=True)
class DataShape:
    """The facts of a stored dataset that decide whether a spec fits it.

    For classification the labels are the integers ``0 .. n_classes-1``
    (string labels are mapped to indices at ingest), ``target_dim`` is 1.
    For regression ``n_classes`` is None and ``target_dim`` is the number of
    target columns (1 for a single column).
    """

    n_rows: int
    n_features: int
    kind: TaskKind
    n_classes: int | None
    target_dim: int = 1
