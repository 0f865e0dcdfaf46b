"""A CUDA graph of one whole training step, for full batches.

The first GRAPH_WARMUP_STEPS full-batch steps run eagerly on a side stream (real
steps, as CUDA graph practice asks); the next is captured, then every full batch
replays it. The graph reads its batch from two static input tensors and writes the
step's sums into static cells; per step, outside the graph, the batch is copied into
the inputs (unless it was gathered there already), and the sums are copied into the
caller's row of per-step sums.

The trainer hands over everything the graph touches: the step function, the input
buffers and the static cells of the sums. What changes from step to step besides the
batch — the learning rate (a schedule, ReduceLROnPlateau), Adam's bias corrections, … —
lives in 0-d device tensors that the optimizer's `begin_step` fills on the host before
every step, eager or replayed (optimizers/optimizer.py), so the captured update reads
each step's values and the step counter stays on the host. Not used with dropout (the
mask's generator would need registering with the graph); a partial last batch runs
eagerly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

GRAPH_WARMUP_STEPS = 3  # eager steps on a side stream before a CUDA graph is captured

Cells = tuple[Tensor, ...]  # a step's sums: loss, then each metric's (views of one row)
StepFn = Callable[[Tensor, Tensor, Cells], None]  # one training step on (xb, yb) → cells


class StepGraph:
    """The captured step of `step` over the static batch `inputs` (see the module)."""

    def __init__(
        self,
        step: StepFn,
        inputs: tuple[Tensor, Tensor],
        cells: Cells,
        device: torch.device,
    ):
        self.step = step
        self.x, self.y = inputs
        self.device = device
        self.warm = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.cells = cells  # the graph writes its sums here; replay copies them out
        self.stream = torch.cuda.Stream(device)

    def warming_up(self) -> bool:
        return self.warm < GRAPH_WARMUP_STEPS

    def warmup_step(self, xb: Tensor, yb: Tensor, row_cells: Cells) -> None:
        """A real step, eager, on the side stream the capture will use."""
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            self.step(xb, yb, row_cells)
        current.wait_stream(self.stream)
        self.warm += 1

    def replay(self, xb: Tensor, yb: Tensor, row_cells: Cells) -> None:
        """The step on the batch (xb, yb), its sums written into `row_cells`."""
        if xb is not self.x:  # unshuffled batches are slices of the data: copy them in
            self.x.copy_(xb)
            self.y.copy_(yb)
        if self.graph is None:
            self._capture()
        assert self.graph is not None
        self.graph.replay()
        for dst, src in zip(row_cells, self.cells, strict=True):
            dst.copy_(src)

    def _capture(self) -> None:
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            self.step(self.x, self.y, self.cells)
        current.wait_stream(self.stream)
        self.graph = graph  # recorded, not run: the replay that follows runs the step
