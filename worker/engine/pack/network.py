"""The packed network: K members' layers as one computation.

Shapes: x [K, n, in], y [K, n, out]; a member's weights are row k of the pack's flat
parameter buffer [K, P], in the solo model's order (layer by layer, kernel before bias,
gamma before beta), each tensor starting at a multiple of ALIGN elements. Layers hold
views into it: kernel [K, in, out], bias [K, 1, out].

Like the solo layers, `forward` stores what `backward` needs and `backward` sits right
below it; the activation functions and their derivatives are the solo engine's own
(they work on any shape). Per-member coefficients (regularizer l1/l2, dropout keep
probability, layer-normalization epsilon) are [K, 1, 1] tensors set by `set_members`.
Rows a member does not train on (the padding of a short batch) arrive with dY = 0, and
every backward here is row-wise or a sum over rows, so they add nothing to a gradient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from fitq.worker.engine import activations
from fitq.worker.engine.errors import ConfigError


@dataclass
class Context:
    """One forward's setting. `draws[k]` is how many rows member k trains on in this step
    (None: it does not train in it); dropout draws that many rows of mask from the
    member's generator, exactly what its solo step draws."""

    training: bool
    draws: Sequence[int | None] = ()
    generators: Sequence[torch.Generator] = ()


class Layer:
    kind = ""
    shapes: dict[str, tuple[int, ...]]  # trainable, per member (as the pack holds them)
    solo_shapes: dict[str, tuple[int, ...]]  # the same, as the solo model holds them

    def __init__(self, index: int, in_dim: int):
        self.index, self.in_dim, self.out_dim = index, in_dim, in_dim
        self.shapes, self.solo_shapes = {}, {}
        self.params: dict[str, Tensor] = {}
        self.grads: dict[str, Tensor] = {}
        self._ws: dict[tuple[str, int, int], Tensor] = {}

    def _buffer(self, name: str, like: Tensor, cols: int, fill: float = 0.0) -> Tensor:
        """A workspace [K, n, cols] kept per (K, n): allocated once, reused every step
        (filled when new, so rows no step writes stay finite)."""
        key = (name, like.shape[0], like.shape[1])
        buf = self._ws.get(key)
        if buf is None:
            buf = self._ws[key] = like.new_full((like.shape[0], like.shape[1], cols), fill)
        return buf

    def bind(self, params: dict[str, Tensor], grads: dict[str, Tensor]) -> None:
        self.params, self.grads = params, grads
        self._ws.clear()

    def set_members(self, configs: Sequence[Mapping[str, Any]], like: Tensor) -> None:
        """Per-member coefficients from each member's layer config."""

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        raise NotImplementedError

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        raise NotImplementedError

    def penalty(self) -> Tensor | None:
        """Each member's regularization term [K] (None: no member has one)."""
        return None


def _coef(values: Sequence[float], like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=like.dtype).view(-1, 1, 1).to(like.device)


class Dense(Layer):
    """y = f(x·W + b) per member: W [K, in, units], b [K, 1, units]."""

    kind = "dense"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any]):
        super().__init__(index, in_dim)
        self.out_dim = int(cfg["units"])
        self.activation = activations.get(cfg["activation"])
        self.shapes["kernel"] = (in_dim, self.out_dim)
        if cfg.get("use_bias", True):
            self.shapes["bias"] = (1, self.out_dim)
        self.solo_shapes = {"kernel": (in_dim, self.out_dim), "bias": (self.out_dim,)}
        self.l1: Tensor | None = None
        self.l2: Tensor | None = None
        self.l2x2: Tensor | None = None  # 2·l2, the gradient's factor

    def set_members(self, configs: Sequence[Mapping[str, Any]], like: Tensor) -> None:
        regs = [c.get("kernel_regularizer") or {} for c in configs]
        l1 = [float(r.get("l1", 0.0) or 0.0) for r in regs]
        l2 = [float(r.get("l2", 0.0) or 0.0) for r in regs]
        self.l1 = _coef(l1, like) if any(l1) else None
        self.l2 = _coef(l2, like) if any(l2) else None
        self.l2x2 = _coef([2.0 * v for v in l2], like) if any(l2) else None

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        w, b = self.params["kernel"], self.params.get("bias")
        z = self._buffer("z", x, self.out_dim)
        # Z = X·W + b   [K, n, units]
        z = torch.baddbmm(b, x, w, out=z) if b is not None else torch.bmm(x, w, out=z)
        y = self.activation.forward(z)
        if ctx.training:
            self._x, self._z, self._y = x, z, y
        return y

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        w = self.params["kernel"]
        dz = self.activation.backward(dy, self._z, self._y)  # dZ = dY ⊙ f'(Z)   [K, n, units]
        torch.bmm(self._x.transpose(1, 2), dz, out=self.grads["kernel"])  # dW = Xᵀ·dZ
        if "bias" in self.grads:
            torch.sum(dz, dim=1, keepdim=True, out=self.grads["bias"])  # db = Σₙ dZ
        if self.l1 is not None:
            self.grads["kernel"].addcmul_(torch.sign(w), self.l1)  # + l1·sign(W)
        if self.l2x2 is not None:
            self.grads["kernel"].addcmul_(w, self.l2x2)  # + 2·l2·W
        if not need_dx:
            return None
        dx = self._buffer("dx", dz, self.in_dim)
        return torch.bmm(dz, w.transpose(1, 2), out=dx)  # dX = dZ·Wᵀ   [K, n, in]

    def penalty(self) -> Tensor | None:
        if self.l1 is None and self.l2 is None:
            return None
        w = self.params["kernel"]
        total = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
        if self.l1 is not None:  # l1·Σ|W| + l2·ΣW², per member
            total += self.l1.view(-1) * w.abs().sum(dim=(1, 2))
        if self.l2 is not None:
            total += self.l2.view(-1) * w.square().sum(dim=(1, 2))
        return total


class Dropout(Layer):
    """Inverted dropout with each member's rate, its mask drawn from its own generator
    (`ctx.draws[k]` rows, as its solo step draws them); identity outside training."""

    kind = "dropout"

    def set_members(self, configs: Sequence[Mapping[str, Any]], like: Tensor) -> None:
        self.keep = [1.0 - float(c.get("rate", 0.0)) for c in configs]
        self.scale = _coef([1.0 / k for k in self.keep], like)
        self.active = any(k < 1.0 for k in self.keep)

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        if not ctx.training or not self.active:
            self._mask = None
            return x
        kept = self._buffer("kept", x, self.in_dim, 1.0)  # the 0/1 draws (rate 0: all 1)
        for k, rows in enumerate(ctx.draws):
            if rows is not None and self.keep[k] < 1.0:
                kept[k, :rows].bernoulli_(self.keep[k], generator=ctx.generators[k])
        mask = torch.mul(kept, self.scale, out=self._buffer("mask", x, self.in_dim))
        self._mask = mask
        return torch.mul(x, mask, out=self._buffer("y", x, self.in_dim))

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        if not need_dx:
            return None
        return dy if self._mask is None else dy.mul_(self._mask)  # dX = dY ⊙ mask


class ActivationLayer(Layer):
    """A standalone activation; it never overwrites its input."""

    kind = "activation"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any]):
        super().__init__(index, in_dim)
        self.activation = activations.get(cfg["activation"])

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        z = x.clone() if self.activation.in_place else x
        y = self.activation.forward(z)
        if ctx.training:
            self._x, self._y = x, y
        return y

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        return self.activation.backward(dy, self._x, self._y) if need_dx else None


class LayerNormalization(Layer):
    """Keras' LayerNormalization per row, y = γ·x̂ + β, x̂ = (x − μ)·r, r = 1/√(σ² + ε);
    backward as the solo layer's, with ĝ = dY·γ and means over the features:
        dγ = Σₙ dY·x̂,  dβ = Σₙ dY,  dX = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))"""

    kind = "layer_normalization"

    def __init__(self, index: int, in_dim: int, cfg: Mapping[str, Any]):
        super().__init__(index, in_dim)
        if cfg.get("scale", True):
            self.shapes["gamma"] = (1, in_dim)
        if cfg.get("center", True):
            self.shapes["beta"] = (1, in_dim)
        self.solo_shapes = {"gamma": (in_dim,), "beta": (in_dim,)}

    def set_members(self, configs: Sequence[Mapping[str, Any]], like: Tensor) -> None:
        self.epsilon = _coef([float(c.get("epsilon", 1e-3)) for c in configs], like)

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        var, mean = torch.var_mean(x, dim=2, correction=0, keepdim=True)
        r = torch.rsqrt(var + self.epsilon)  # [K, n, 1]
        xhat = (x - mean).mul_(r)
        if ctx.training:
            self._xhat, self._r = xhat, r
        y = xhat * self.params["gamma"] if "gamma" in self.params else xhat.clone()
        if "beta" in self.params:
            y.add_(self.params["beta"])
        return y

    def backward(self, dy: Tensor, need_dx: bool) -> Tensor | None:
        xhat, r = self._xhat, self._r
        if "gamma" in self.grads:
            torch.sum(dy * xhat, dim=1, keepdim=True, out=self.grads["gamma"])
        if "beta" in self.grads:
            torch.sum(dy, dim=1, keepdim=True, out=self.grads["beta"])
        if not need_dx:
            return None
        gh = dy * self.params["gamma"] if "gamma" in self.params else dy
        mean_g = gh.mean(dim=2, keepdim=True)
        mean_gx = (gh * xhat).mean(dim=2, keepdim=True)
        return (gh - mean_g - xhat * mean_gx).mul_(r)


def build(index: int, in_dim: int, cfg: Mapping[str, Any]) -> Layer:
    kind = cfg.get("type")
    if kind == "dense":
        return Dense(index, in_dim, cfg)
    if kind == "dropout":
        return Dropout(index, in_dim)
    if kind == "activation":
        return ActivationLayer(index, in_dim, cfg)
    if kind == "layer_normalization":
        return LayerNormalization(index, in_dim, cfg)
    raise ConfigError(f"layer {index}: {kind!r} layers do not train in a pack")


@dataclass
class Network:
    """The layers, the flat layout of one member's parameters, and the step's passes."""

    layers: list[Layer]
    input_dim: int
    output_dim: int
    # exported name → (offset in a member's row, pack shape, solo shape), export order
    offsets: dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    size: int = 0  # P: a member's row, its parameters with each tensor aligned
    first_trainable: int = 0  # layers before it need no dX
    regularized: bool = False  # some member has a kernel regularizer (set_members)

    @classmethod
    def from_model(cls, model_cfg: Mapping[str, Any]) -> Network:
        dim = int(model_cfg["input_dim"])
        layers = []
        for i, cfg in enumerate(model_cfg["layers"]):
            layers.append(build(i, dim, cfg))
            dim = layers[-1].out_dim
        net = cls(layers, int(model_cfg["input_dim"]), dim)
        for layer in layers:
            for name, shape in layer.shapes.items():
                net.offsets[f"layers.{layer.index}.{name}"] = (
                    net.size,
                    shape,
                    layer.solo_shapes[name],
                )
                net.size = _aligned(net.size + _numel(shape))
        trainable = [i for i, layer in enumerate(layers) if layer.shapes]
        net.first_trainable = trainable[0] if trainable else len(layers)
        return net

    def bind(self, flat_params: Tensor, flat_grads: Tensor) -> None:
        """Point every layer at its views of the pack's flat buffers [K, P]."""
        k = flat_params.shape[0]
        for layer in self.layers:
            params, grads = {}, {}
            for name in layer.shapes:
                off, shape, _ = self.offsets[f"layers.{layer.index}.{name}"]
                n = _numel(shape)
                params[name] = flat_params[:, off : off + n].view(k, *shape)
                grads[name] = flat_grads[:, off : off + n].view(k, *shape)
            layer.bind(params, grads)

    def solo_flat(self, row: Tensor) -> Tensor:
        """A member's row [P] as the solo model's flat vector (its tensors back to back)."""
        return torch.cat([t.reshape(-1) for t in self.named(row).values()])

    def load_solo_flat(self, row: Tensor, flat: Tensor) -> None:
        """Fill a member's row from a solo flat vector (the inverse of `solo_flat`)."""
        at = 0
        for t in self.named(row).values():
            t.copy_(flat[at : at + t.numel()].view(t.shape))
            at += t.numel()
        if at != flat.numel():
            raise ValueError(f"a flat vector of {flat.numel()} values, not {at}")

    def set_members(self, model_cfgs: Sequence[Mapping[str, Any]], like: Tensor) -> None:
        for layer in self.layers:
            layer.set_members([cfg["layers"][layer.index] for cfg in model_cfgs], like)
        self.regularized = any(  # read every step: kept, not recomputed
            isinstance(layer, Dense) and (layer.l1 is not None or layer.l2x2 is not None)
            for layer in self.layers
        )

    def named(self, row: Tensor) -> dict[str, Tensor]:
        """One member's weights by exported name: views of its row [P], solo shapes."""
        return {
            name: row[off : off + _numel(shape)].view(solo_shape)
            for name, (off, shape, solo_shape) in self.offsets.items()
        }

    def fused_last(self) -> None:
        """The loss takes the final activation over (logits in, fused and stable)."""
        last = self.layers[-1]
        assert isinstance(last, Dense | ActivationLayer)
        last.activation = activations.Linear()

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        for layer in self.layers:
            x = layer.forward(x, ctx)
        return x

    def backward(self, dout: Tensor) -> None:
        first = self.first_trainable
        for i in range(len(self.layers) - 1, first - 1, -1):
            dout = self.layers[i].backward(dout, i > first)  # type: ignore[assignment]

    def penalty(self) -> Tensor | None:
        terms = [p for layer in self.layers if (p := layer.penalty()) is not None]
        return torch.stack(terms).sum(dim=0) if terms else None


ALIGN = 16  # elements: every tensor of a member's row starts at a multiple of 64 bytes


def _aligned(n: int) -> int:
    """n rounded up to ALIGN. A member's matrices then sit at the same alignment in every
    row of every pack, and MKL's GEMMs (whose kernels depend on it) round a member's
    products the same way whichever pack and row it is in."""
    return -(-n // ALIGN) * ALIGN


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
