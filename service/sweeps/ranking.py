"""A trial's value and the order of trials (Keras Tuner's objective: the best
epoch value of the metric over the trial's History, not its last)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def trial_value(
    history: Iterable[Mapping[str, Any]], metric: str, *, maximize: bool
) -> float | None:
    """The best finite value of ``metric`` over the epochs, or None when no epoch has it."""
    values = [
        float(row[metric])
        for row in history
        if isinstance(row.get(metric), int | float) and math.isfinite(row[metric])
    ]
    if not values:
        return None
    return max(values) if maximize else min(values)


def ranked(
    trials: Sequence[T], value_of: Callable[[T], float | None], *, maximize: bool
) -> list[T]:
    """Best first; trials without a value last, in their given order."""
    scored = [(value_of(t), t) for t in trials]
    valued = [(v, t) for v, t in scored if v is not None]
    valued.sort(key=lambda pair: pair[0], reverse=maximize)
    return [t for _, t in valued] + [t for v, t in scored if v is None]
