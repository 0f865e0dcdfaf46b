"""Comparing jobs side by side: where their specs differ, and how they ended.

Pure functions over job resources (the dicts ``Client.job`` returns), so the
CLI (``fitq compare``), a notebook and the tests share one definition:

    diff = spec_differences([a["spec"], b["spec"]])
    # {"compile.optimizer.learning_rate": [0.001, 0.01], "fit.epochs": [10, ABSENT]}

A spec is flattened to dotted paths (list items by index: ``model.layers.0.units``,
as a sweep's parameters are written); a path is shown when its value is not
the same in every spec, ``ABSENT`` where a spec lacks it. Values are compared
as JSON (``1`` and ``true`` differ, ``1`` and ``1.0`` do not).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


class Absent:
    """The value of a path that a spec does not have."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = Absent()


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``value``'s leaves by dotted path; an empty object or list is a leaf."""
    if isinstance(value, Mapping) and value:
        items: Any = value.items()
    elif isinstance(value, list | tuple) and value:
        items = enumerate(value)
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, child in items:
        flat.update(flatten(child, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def spec_differences(specs: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Each dotted path whose value is not the same in all of ``specs``, with
    its value in each (``ABSENT`` where missing), in the order paths first appear."""
    flats = [flatten(spec) for spec in specs]
    paths = list(dict.fromkeys(path for flat in flats for path in flat))
    differences: dict[str, list[Any]] = {}
    for path in paths:
        values = [flat.get(path, ABSENT) for flat in flats]
        if len({_canonical(v) for v in values}) > 1:
            differences[path] = values
    return differences


def final_metrics(jobs: Sequence[Mapping[str, Any]]) -> dict[str, list[float | None]]:
    """Each job's latest metrics (``loss``, ``val_accuracy``, …) and test metrics
    (``test loss``, …), by name across all the jobs (None where a job has none)."""
    named: dict[str, list[float | None]] = {}
    for prefix, field in (("", "metrics"), ("test ", "test_metrics")):
        names = list(dict.fromkeys(k for job in jobs for k in (job.get(field) or {})))
        for name in names:
            named[prefix + name] = [(job.get(field) or {}).get(name) for job in jobs]
    return named


def _canonical(value: Any) -> str:
    if value is ABSENT:
        return "\0absent"
    return json.dumps(_whole_numbers(value), sort_keys=True)


def _whole_numbers(value: Any) -> Any:
    """``value`` with every float that is a whole number as an int (``1.0`` is
    ``1``; ints stay exact, so two seeds near 2⁶³ still differ), booleans kept."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_whole_numbers(v) for v in value]
    return value
