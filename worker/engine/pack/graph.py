"""A pack's training step captured in a CUDA graph, one per seating (its K and B).

The solo trainer's `cuda_graph.StepGraph` does the capturing (3 eager warm-up steps on
a side stream, then one capture, then a replay per step). What the pack's step reads
that changes from step to step lives in static buffers here, filled before each step,
eager warm-up or replay: the batch (gathered into the seating's input buffers outside
the graph), the row weights `w` and 0/1 `valid` [K, B], the rows per member `counts`
[K], and the step-dependent optimizer coefficients (Adam's bias corrections) [K, 1].
The graph writes the step's sums into static cells, copied into the round's `stats`
row after each replay.

Steps where some member sits out (their update goes through a gather of the active
rows, a shape of its own) and packs with an active dropout layer (the members' mask
generators are not registered with the graph) run eagerly. A graph belongs to one
seating: a change of membership seats the members anew, and the next step captures
again. The data is no part of the capture: the gather runs before it, eagerly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from fitq.worker.engine.cuda_graph import Cells, StepGraph

# (xb, yb, w, valid, counts, step coefficients, cells): one step's computation (valid
# None: no padding rows)
Compute = Callable[[Tensor, Tensor, Tensor, Tensor | None, Tensor, dict[str, Tensor], Cells], None]


class PackGraph:
    """The captured step of one seating (see the module docstring)."""

    def __init__(
        self,
        compute: Compute,
        inputs: tuple[Tensor, Tensor],
        plan_like: tuple[Tensor, Tensor, Tensor],
        step_coefs: dict[str, Tensor],
        cells: int,
    ):
        w, valid, counts = plan_like
        self.w, self.valid, self.counts = w.clone(), valid.clone(), counts.clone()
        self.coefs = {n: t.clone() for n, t in step_coefs.items()}
        k = counts.shape[0]
        static = tuple(torch.zeros(cells, k, dtype=w.dtype, device=w.device).unbind(0))
        self.replays = 0  # steps that ran from the graph (tests read it)

        def step(xb: Tensor, yb: Tensor, out: Cells) -> None:
            compute(xb, yb, self.w, self.valid, self.counts, self.coefs, out)

        self.graph = StepGraph(step, inputs, static, w.device)

    def run(
        self,
        inputs: tuple[Tensor, Tensor],
        plan_row: tuple[Tensor, Tensor, Tensor],
        step_coefs: dict[str, Tensor],
        cells: Cells,
    ) -> None:
        """One step on the gathered batch `inputs`, with this step's plan row (w, valid,
        counts) and coefficients; its sums into `cells`."""
        for dst, src in zip((self.w, self.valid, self.counts), plan_row, strict=True):
            dst.copy_(src, non_blocking=True)
        for name, t in step_coefs.items():
            self.coefs[name].copy_(t, non_blocking=True)
        xb, yb = inputs
        if self.graph.warming_up():
            self.graph.warmup_step(xb, yb, cells)
        else:
            self.graph.replay(xb, yb, cells)
            self.replays += 1
