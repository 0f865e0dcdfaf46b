"""A CUDA graph of one whole training step, for full batches.

The first GRAPH_WARMUP_STEPS full-batch steps run eagerly on a side stream (real
steps, as CUDA graph practice asks); the next is captured, then every full batch
replays it. The graph reads its batch from two static input tensors and writes the
step's sums into static cells; per step, outside the graph, the batch is copied into
the inputs (unless it was gathered there already), and the sums are copied into the
caller's row of per-step sums.

The trainer hands over everything the graph touches: the step function, the input
buffers, the static cells of the sums and the optimizer's state (whose Python-side step counter
a replay must advance, since the capture records the update but not the `+= 1`).
Adam's step-dependent scalars live in device tensors the trainer fills before each
step. Not used with dropout (the mask's generator would need registering with the
graph); a partial last batch runs eagerly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from fitq.worker.engine.optimizers import AdamConfig, Config, State

GRAPH_WARMUP_STEPS = 3  # eager steps on a side stream before a CUDA graph is captured

Cells = tuple[Tensor, ...]  # a step's sums: loss, then each metric's (views of one row)
StepFn = Callable[[Tensor, Tensor, Cells], None]  # one training step on (xb, yb) → cells


def adam_scalars(config: Config, device: torch.device) -> tuple[Tensor, Tensor] | None:
    """On CUDA, the device tensors Adam reads its step-dependent scalars from (step size,
    √(1 − β₂ᵗ)), filled before every step whether it runs eagerly or replays a graph, so
    both do the same arithmetic; None elsewhere."""
    if device.type != "cuda" or not isinstance(config, AdamConfig):
        return None
    return torch.ones((), device=device), torch.ones((), device=device)


class StepGraph:
    """The captured step of `step` over the static batch `inputs` (see the module)."""

    def __init__(
        self,
        step: StepFn,
        inputs: tuple[Tensor, Tensor],
        cells: Cells,
        optimizer_state: State,
        device: torch.device,
    ):
        self.step = step
        self.x, self.y = inputs
        self.optimizer_state = optimizer_state
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
        self.optimizer_state.step += 1
        for dst, src in zip(row_cells, self.cells, strict=True):
            dst.copy_(src)

    def _capture(self) -> None:
        step_before = self.optimizer_state.step
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            self.step(self.x, self.y, self.cells)
        current.wait_stream(self.stream)
        self.optimizer_state.step = step_before  # capture records the step, it does not run it
        self.graph = graph
