"""What the benchmarks compute from their samples."""

from __future__ import annotations

import statistics


def pct(seconds: list[float], q: int) -> float:
    """The ``q``-th percentile of some latencies, in milliseconds (NaN under two samples)."""
    if len(seconds) < 2:
        return float("nan")
    return statistics.quantiles(seconds, n=100)[q - 1] * 1000
