"""The packed update rules compiled into one loop over memory (CPU, torch.compile).

Eager, a rule is 5–8 ops, each a pass over [K, P] buffers; at K = 16 members of the
benchmark's 109k-parameter net the optimizer state (~28 MB) is far larger than a core's
L2, so every pass streams from L3 or DRAM and the update costs ~3× its one-pass floor.
Inductor turns the same function — the rule in optim.py, unchanged — into one C++ loop
that reads p, g and the slots once and writes them once, with the [K, 1]
hyperparameters broadcast per row. Each element's arithmetic is the eager rule's ops in
the same order, so it agrees with the eager path to round-off (tests/engine/test_pack_fused.py).

Used only where it pays and is possible (`wanted`): on the CPU, for a member row of at
least FUSE_MIN_PARAMS parameters, when a C++ compiler is on PATH (the worker image
installs g++; a machine without one runs the eager rules). The compile is a one-time
cost per process — 3–12 s for the first rule with inductor's on-disk cache warm (more
under load), 15–20 s cold, then a fraction of a second per further rule — which a
smaller net's update (a few hundred µs a step) would take thousands of steps to repay;
the 109k-parameter benchmark net saves ~3 ms a step at K = 16 (one thread). The choice
depends on the structure alone, not on K, so a member's bits do not depend on its
packmates. A compile that fails turns fusion off for the process (the eager rule then
runs; a failed compile leaves the tensors untouched).

The compiled functions are shared by every pack of the process: one per rule, compiled
again per dtype and set of switches, one kernel for every K ≥ 2 (dynamic shapes; K = 1
gets its own). Dynamo compiles under its own lock, so pack-per-core lanes may call in
from several threads.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)

FUSE_MIN_PARAMS = 65_536  # a member's row (P): below it the compile is not repaid

Rule = Callable[..., None]

# one kernel for every K ≥ 2 (dynamic shapes); OpenMP threads as the calling thread has
# them (torch.set_num_threads is per thread: a pack-per-core lane keeps to one)
_OPTIONS: dict[str, Any] = {
    "dynamic": True,
    "fullgraph": True,
    "options": {"cpp.dynamic_threads": True},
}

_lock = threading.Lock()
_compiled: dict[Rule, Rule] = {}
_broken = False  # a compile failed once: eager from then on


def available() -> bool:
    """Whether inductor can build CPU kernels here: a C++ compiler on PATH."""
    return not _broken and any(shutil.which(c) for c in ("g++", "c++", "clang++"))


def wanted(device: torch.device, row_params: int, requested: bool | None) -> bool:
    """Fuse the update for a pack of rows of `row_params` on `device`? `requested`
    None decides by the rule above; False never; True wherever possible (tests)."""
    if requested is False or device.type != "cpu" or not available():
        return False
    return requested is True or row_params >= FUSE_MIN_PARAMS


def run(rule: Rule, *args: Any) -> None:
    """`rule(*args)` through its compiled form (the eager rule once compiling failed)."""
    global _broken
    if _broken:
        rule(*args)
        return
    fn = _compiled.get(rule)
    if fn is None:
        with _lock:
            fn = _compiled.setdefault(rule, torch.compile(rule, **_OPTIONS))
    try:
        fn(*args)
    except _compile_errors() as e:  # raised before the kernel ran: the tensors are untouched
        _broken = True
        log.warning("packed_update_not_fused", extra={"action": "eager", "error": str(e)})
        rule(*args)


def _compile_errors() -> tuple[type[Exception], ...]:
    """What a failed compile raises (imported late: only a fused pack needs them)."""
    import torch._dynamo.exc
    import torch._inductor.exc

    return (torch._dynamo.exc.TorchDynamoException, torch._inductor.exc.InductorError)
