"""What every loss shares: the `Loss` interface and Keras' clipping epsilon.

Every loss is Keras': a per-sample value (the mean over the last axis for the
elementwise losses), averaged over the batch. The engine needs the *sum* over the batch
(epoch means are weighted by batch size), so `total(out, y)` returns Σₙ loss(n) and
`total_and_grad(out, y, into)` writes that sum into the 0-d tensor `into` and returns
∂(mean loss)/∂out [n, k]. Neither overwrites `out` or `y`.
"""

from __future__ import annotations

from torch import Tensor

EPSILON = 1e-7  # Keras' backend epsilon: the clip on probabilities, the floor of divisors


class Loss:
    name = ""
    sparse_targets = False  # targets are class indices [n, 1]

    def __init__(self, from_logits: bool = False):
        self.from_logits = from_logits

    def total(self, out: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def total_and_grad(self, out: Tensor, y: Tensor, into: Tensor) -> Tensor:
        raise NotImplementedError
