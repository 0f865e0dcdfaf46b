"""Early termination of trials that fall behind: asynchronous successive halving.

ASHA (Li et al., 2020) in its stopping form, as Ray Tune's ``AsyncHyperBandScheduler``
runs it: the rungs are epochs ``min_epochs · ηᵏ`` (η the reduction factor). When a
trial reaches a rung, its value there is recorded; it goes on only if that value is
within the best ``1/η`` of all values recorded at the rung so far (its own included).
The decision needs no other trial to wait, so trials that start late, or in another
pack, are judged against whatever the rung holds when they arrive. A trial alone at
a rung always goes on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def rungs(min_epochs: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """The epochs at which trials are judged, below the trial's last epoch."""
    found, epoch = [], min_epochs
    while epoch < max_epochs:
        found.append(epoch)
        epoch *= reduction_factor
    return found


def keeps_going(
    value: float, recorded: Sequence[float], reduction_factor: int, *, maximize: bool
) -> bool:
    """Whether a trial whose value at a rung is ``value`` continues, given every
    value recorded at that rung (``value`` among them). A NaN value stops it."""
    if math.isnan(value):
        return False
    finite = sorted((v for v in recorded if not math.isnan(v)), reverse=maximize)
    keep = max(1, len(finite) // reduction_factor)
    cutoff = finite[keep - 1]
    return value >= cutoff if maximize else value <= cutoff
