"""What every layer shares: the call context and the `Layer` base class.

Shapes: x [n, in], y [n, out]. `forward(x, ctx)` returns y; `backward(dy, need_dx)`
fills the layer's gradient tensors (`grads`, parallel to `params`) and returns dX
(or None when no earlier layer needs it). backward may overwrite dy.

When `ctx.reuse` is true a layer writes its outputs into buffers it keeps per
batch size (allocated once, reused every step); the caller must be done with the
previous output of the same size before the next forward. Predictors pass
reuse=False so concurrent calls never share memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def where(index: int) -> str:
    """A layer's place in the normalized spec, for error messages."""
    return f"model.layers.{index}"


@dataclass
class Context:
    training: bool
    reuse: bool = True
    generator: torch.Generator | None = None  # the noise layers' (dropout, gaussian, …)


class Layer:
    kind = ""
    random = False  # draws from ctx.generator while training (no CUDA graph then)
    constrained = False  # has constraints to apply after each update (`constrain`)

    def __init__(self, index: int, in_dim: int):
        self.index = index
        self.in_dim = in_dim
        self.out_dim = in_dim
        self.params: dict[str, Tensor] = {}  # trainable, export order
        self.grads: dict[str, Tensor] = {}
        self.buffers: dict[str, Tensor] = {}  # non-trainable state (exported too)
        self._ws: dict[tuple[str, int], Tensor] = {}

    def _buffer(self, ctx: Context, name: str, like: Tensor, cols: int) -> Tensor | None:
        if not ctx.reuse:
            return None
        key = (name, like.shape[0])
        buf = self._ws.get(key)
        if buf is None:
            buf = self._ws[key] = torch.empty(
                like.shape[0], cols, dtype=like.dtype, device=like.device
            )
        return buf

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        raise NotImplementedError

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        raise NotImplementedError

    def penalty(self) -> Tensor | None:
        """The weight regularization term this layer adds to the loss (None: none)."""
        return None

    def activity(self) -> Tensor | None:
        """Σ over the last forward's rows of this layer's activity regularization (None:
        none); Keras adds it to that batch's loss divided by the batch's rows."""
        return None

    def constrain(self) -> None:
        """Apply the weights' constraints in place, after an update (Keras' order)."""

    def to(self, device: torch.device, dtype: torch.dtype) -> None:
        for d in (self.params, self.buffers):
            for k, t in d.items():
                d[k] = t.to(device=device, dtype=dtype)
        self.grads = {k: torch.zeros_like(t) for k, t in self.params.items()}
        self._ws.clear()
