"""The model: a stack of layers built from `spec["model"]`, its weights by their
exported names, and the predictor the API loads from a trained model's safetensors.

Weight names: `layers.{i}.kernel` [in, out], `layers.{i}.bias`,
`layers.{i}.gamma/beta/moving_mean/moving_variance`, `layers.{i}.alpha` (prelu), i = the
index in `spec["model"]["layers"]` (a layer without weights, dropout, takes an index
too); `normalization.mean` / `normalization.std` [input_dim] when `fit.normalize` is on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import safetensors.torch
import torch
from torch import Tensor

from fitq.worker.engine import activations
from fitq.worker.engine.config import Checked, count, read
from fitq.worker.engine.errors import ConfigError, DataError
from fitq.worker.engine.layers import ActivationLayer, Context, Dense, Layer, build
from fitq.worker.engine.losses import Loss
from fitq.worker.engine.metrics import Metric, results, width
from fitq.worker.engine.metrics import cells as metrics_cells

PREDICT_BATCH_ROWS = 8192  # rows per forward pass in predict/evaluate

# the streams derived from a job's seed; each draws from its own generator (the
# dropout stream feeds every noise layer: dropout, gaussian noise and dropouts)
SEED_STREAM_INIT, SEED_STREAM_SHUFFLE, SEED_STREAM_DROPOUT = 0, 1, 2


def derive_seed(seed: int, stream: int) -> int:
    """A 63-bit seed for one random stream of a job, from the job's seed."""
    state = np.random.SeedSequence([int(seed) & (2**64 - 1), stream]).generate_state(1, np.uint64)
    return int(state[0]) >> 1


def shuffle_generator(seed: int) -> torch.Generator:
    """The CPU generator of a job's epoch permutations."""
    return torch.Generator().manual_seed(derive_seed(seed, SEED_STREAM_SHUFFLE))


def dropout_generator(seed: int, device: torch.device) -> torch.Generator:
    """The generator of a job's dropout masks, on the training device."""
    return torch.Generator(device).manual_seed(derive_seed(seed, SEED_STREAM_DROPOUT))


def default_device() -> str:
    """'cuda' when a CUDA device is available, else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class ModelConfig(Checked):
    """A normalized `spec["model"]`: `input_dim` features into `layers`, in order.
    `input_shape` is the shape the rows had before they were stored flat (its product is
    `input_dim`); the engine computes on flat rows, where Flatten is the identity."""

    input_dim: Annotated[int, count(ge=1)]
    input_shape: list[int]
    layers: list[Mapping[str, Any]]

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.layers:
            raise ConfigError("layers must not be empty")
        shape = self.input_shape
        if (
            not isinstance(shape, list)
            or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)
            or math.prod(shape) != self.input_dim
        ):
            raise ConfigError(
                f"input_shape must be a list of sizes >= 1 whose product is input_dim "
                f"({self.input_dim}), got {shape!r}"
            )


class Model:
    """Layers in order; `forward` then `backward` for training, `outputs` for inference.

    The initial weights depend only on the seed and `spec["model"]`: they are drawn on
    the CPU in float32 from a generator seeded with `derive_seed(seed, SEED_STREAM_INIT)`,
    layer by layer, kernel before bias, then moved to `device`.
    """

    def __init__(
        self,
        cfg: Mapping[str, Any],
        seed: int = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        c = read(ModelConfig, cfg, "model")
        input_dim, specs = c.input_dim, c.layers
        self.input_dim = input_dim
        self.layer_specs = list(specs)
        self.device = torch.device(device)
        self.dtype = dtype
        g = torch.Generator().manual_seed(derive_seed(seed, SEED_STREAM_INIT))
        self.layers: list[Layer] = []
        dim = input_dim
        for i, spec in enumerate(specs):
            layer = build(i, dim, spec, g)
            layer.to(self.device, dtype)
            self.layers.append(layer)
            dim = layer.out_dim
        self.output_dim = dim
        self._flatten()
        trainable = [i for i, layer in enumerate(self.layers) if layer.params]
        self._first_trainable = trainable[0] if trainable else len(self.layers)
        self.fused_activation: activations.Activation | None = None
        # draws noise while training (dropout, gaussian noise, …): no CUDA graph then
        self.has_dropout = any(layer.random for layer in self.layers)
        # adds a penalty to the loss: weight (L1L2 kernels) or activity regularization
        self.regularized = any(
            getattr(layer, "l1", 0) or getattr(layer, "l2", 0) for layer in self.layers
        )
        self.constrained = any(layer.constrained for layer in self.layers)
        self._rows = 1  # the last forward's batch rows

    def _flatten(self) -> None:
        """Put every trainable tensor into one flat buffer, and every gradient into another,
        the layers keeping views: the optimizer then updates all weights with a handful of
        ops over one tensor instead of a handful per weight (on the CPU torch's foreach ops
        are a loop of per-tensor ops)."""
        shapes = [(layer, name, t) for layer in self.layers for name, t in layer.params.items()]
        total = sum(t.numel() for _, _, t in shapes)
        self.flat_params = torch.empty(total, dtype=self.dtype, device=self.device)
        self.flat_grads = torch.zeros(total, dtype=self.dtype, device=self.device)
        offset = 0
        for layer, name, t in shapes:
            n = t.numel()
            view = self.flat_params[offset : offset + n].view(t.shape)
            view.copy_(t)
            layer.params[name] = view
            layer.grads[name] = self.flat_grads[offset : offset + n].view(t.shape)
            offset += n
        self.params = [t for layer in self.layers for t in layer.params.values()]
        self.grads = [t for layer in self.layers for t in layer.grads.values()]

    # ------------------------------------------------------------------ output fusion

    def final_activation(self) -> str | None:
        """The name of the activation the model ends with (None after a dropout/norm)."""
        last = self.layers[-1]
        if isinstance(last, Dense | ActivationLayer):
            return last.activation.name
        return None

    def fuse_final_activation(self) -> None:
        """Make `forward` return the final activation's input (logits): the loss then
        takes it over, fused and stable. `outputs` still applies it."""
        last = self.layers[-1]
        assert isinstance(last, Dense | ActivationLayer)
        self.fused_activation = last.activation
        last.activation = activations.Linear()

    # ------------------------------------------------------------- forward, backward

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        """x [n, input_dim] → the last layer's output [n, output_dim] (logits when fused)."""
        self._rows = x.shape[0]
        for layer in self.layers:
            x = layer.forward(x, ctx)
        return x

    def backward(self, dout: Tensor) -> None:
        """Fill every layer's grads from ∂loss/∂output [n, output_dim] (the last forward's)."""
        first = self._first_trainable
        for i in range(len(self.layers) - 1, first - 1, -1):
            dout = self.layers[i].backward(dout, i > first)  # type: ignore[assignment]

    def outputs(self, x: Tensor, ctx: Context) -> Tensor:
        """What the model predicts: the final layer's outputs (e.g. softmax probabilities)."""
        out = self.forward(x, ctx)
        if self.fused_activation is not None:
            act = self.fused_activation
            out = act.forward(out.clone() if act.in_place else out)
        return out

    def penalty(self) -> Tensor | None:
        """What Keras adds to the last forward's batch loss: the weights' regularization
        terms, and the activity regularization of the batch ÷ its rows."""
        terms = self.weight_penalties()
        activity = self.activity()
        if activity is not None:
            terms.append(activity / self._rows)
        return torch.stack(terms).sum() if terms else None

    def weight_penalties(self) -> list[Tensor]:
        """The layers' weight regularization terms (L1L2 on dense kernels)."""
        return [p for layer in self.layers if (p := layer.penalty()) is not None]

    def activity(self) -> Tensor | None:
        """Σ over the last forward's rows of the activity regularization terms (None: none)."""
        terms = [a for layer in self.layers if (a := layer.activity()) is not None]
        return torch.stack(terms).sum() if terms else None

    def constrain(self) -> None:
        """Apply the weights' constraints, in place: call it after every update."""
        for layer in self.layers:
            if layer.constrained:
                layer.constrain()

    # ------------------------------------------------------------------ named weights

    def named_tensors(self) -> dict[str, Tensor]:
        """Every weight and buffer by its exported name (the tensors themselves, not copies)."""
        out: dict[str, Tensor] = {}
        for layer in self.layers:
            for name, t in (*layer.params.items(), *layer.buffers.items()):
                out[f"layers.{layer.index}.{name}"] = t
        return out

    def load_named_tensors(self, tensors: Mapping[str, Tensor], prefix: str = "") -> None:
        """Copy weights in place (the tensors keep their identity: optimizer, CUDA graph)."""
        for name, t in self.named_tensors().items():
            src = tensors.get(prefix + name)
            if src is None:
                raise DataError(f"weights have no tensor {prefix + name!r}")
            if tuple(src.shape) != tuple(t.shape):
                raise DataError(
                    f"{prefix + name}: shape {list(src.shape)} is not the model's {list(t.shape)}"
                )
            t.copy_(src)


def check_features(x: Any, input_dim: int, what: str = "x") -> np.ndarray:
    """x as a C-contiguous float32 array [n, input_dim], finite, or a DataError."""
    try:
        arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    except (TypeError, ValueError) as e:
        raise DataError(f"{what} is not numeric: {e}") from None
    if arr.ndim != 2 or arr.shape[1] != input_dim:
        raise DataError(f"{what} must have shape [n, {input_dim}], got {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise DataError(f"{what} has no rows")
    if not np.isfinite(arr).all():
        raise DataError(f"{what} holds NaN or Inf values")
    if not arr.flags.writeable:  # a memory-mapped dataset: torch wants writable memory
        arr = arr.copy()
    return arr


class Predictor:
    """A trained model for inference: `predict(x)` → the final layer's outputs.

    Thread-safe: it keeps no per-call buffers. Applies the stored normalization."""

    def __init__(self, model: Model, mean: Tensor | None = None, std: Tensor | None = None):
        self.model = model
        self.mean, self.std = mean, std

    @torch.no_grad()
    def predict(self, x: Any) -> np.ndarray:
        arr = check_features(x, self.model.input_dim)
        return predict_tensor(self.model, torch.from_numpy(arr), self.mean, self.std, reuse=False)


def predict_tensor(
    model: Model, x: Tensor, mean: Tensor | None, std: Tensor | None, *, reuse: bool
) -> np.ndarray:
    ctx = Context(training=False, reuse=reuse)
    parts = []
    for lo in range(0, x.shape[0], PREDICT_BATCH_ROWS):
        xb = x[lo : lo + PREDICT_BATCH_ROWS].to(model.device)
        if mean is not None and std is not None:
            xb = (xb - mean) / std
        parts.append(model.outputs(xb, ctx).cpu().numpy().copy())
    return np.concatenate(parts, axis=0)


def evaluate_tensors(
    model: Model, loss: Loss, metrics: list[Metric], x: Tensor, y: Tensor, ctx: Context
) -> dict[str, float]:
    """Keras' `evaluate` over device tensors (targets as the loss takes them): the mean
    loss, regularization included, and each metric, in batches of PREDICT_BATCH_ROWS.
    The activity regularization is summed over rows (Keras adds each batch's ÷ its
    rows to that batch's mean loss), so the batches' size does not change the result."""
    n = x.shape[0]
    cells = torch.zeros(width(metrics), device=x.device)
    part = torch.zeros_like(cells)
    views = metrics_cells(part, metrics)
    for lo in range(0, n, PREDICT_BATCH_ROWS):
        xb, yb = x[lo : lo + PREDICT_BATCH_ROWS], y[lo : lo + PREDICT_BATCH_ROWS]
        out = model.forward(xb, ctx)
        views[0].copy_(loss.total(out, yb))
        activity = model.activity()
        if activity is not None:
            views[0].add_(activity)
        for metric, cell in zip(metrics, views[1:], strict=True):
            metric.total(out, yb, cell, loss.from_logits, model.fused_activation)
        cells.add_(part)
    sums = cells.to("cpu", torch.float64).tolist()
    logs = {"loss": sums[0] / n}
    penalties = model.weight_penalties()
    if penalties:
        logs["loss"] += float(torch.stack(penalties).sum())
    return logs | results(metrics, sums, n)


def load_model(
    model_cfg: Mapping[str, Any],
    tensors: Mapping[str, Tensor],
    device: str | torch.device | None = None,
) -> Model:
    """A Model with the weights of `tensors` (exported names), on `device`."""
    model = Model(model_cfg, 0, device or default_device())
    with torch.no_grad():
        model.load_named_tensors(tensors)
    return model


def load_predictor(
    model_cfg: Mapping[str, Any], safetensors_bytes: bytes, device: str | torch.device | None = None
) -> Predictor:
    """The Predictor for a model exported by `Trainer.export_safetensors`."""
    try:
        tensors = safetensors.torch.load(safetensors_bytes)
    except Exception as e:  # safetensors raises its own SafetensorError
        raise DataError(f"not a safetensors file: {e}") from None
    model = load_model(model_cfg, tensors, device)
    mean, std = tensors.get("normalization.mean"), tensors.get("normalization.std")
    if mean is not None and std is not None:
        mean, std = mean.to(model.device), std.to(model.device)
    return Predictor(model, mean, std)
