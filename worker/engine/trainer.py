"""The Trainer: Keras' fit / evaluate / predict on the engine's layers and optimizers.

One training step, under torch.no_grad() (no autograd anywhere):

    xb, yb ← the next batch, gathered into preallocated buffers (data on the device)
    out    ← model.forward(xb)                   logits when the final activation is fused
    Σloss  ← loss.total_and_grad(out, yb)         written into this step's row of `stats`
    Σmetric← metric.total(out, yb)                (before the update, as Keras' History)
    grads  ← model.backward(∂loss/∂out)           + the regularizers' gradients
    params ← optimizer.step(grads)                 the foreach path

`stats` is a device tensor [steps_per_epoch, 1 + metrics] of per-step sums, so a
step never waits for the device: it is read once at the epoch end (and every
NONFINITE_CHECK_STEPS steps, to stop a diverged run early). A non-finite loss
raises TrainingError naming the first bad epoch and step, whenever it is found.

Epoch and step numbers given to hooks and errors are 1-based; `step` is the step
inside its epoch.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import safetensors.torch
import torch
from torch import Tensor

from fitq.worker.engine import checkpoint as ckpt
from fitq.worker.engine import losses, metrics, optimizers
from fitq.worker.engine.config import Checked, count, read, real
from fitq.worker.engine.early_stopping import EarlyStopping
from fitq.worker.engine.errors import DataError, TrainingError
from fitq.worker.engine.layers import Context
from fitq.worker.engine.model import (
    PREDICT_BATCH_ROWS,
    SEED_STREAM_DROPOUT,
    SEED_STREAM_SHUFFLE,
    Model,
    check_features,
    default_device,
    derive_seed,
    predict_tensor,
)

NONFINITE_CHECK_STEPS = 100  # steps between checks of the loss for NaN/Inf (one device sync)
GRAPH_WARMUP_STEPS = 3  # eager steps on a side stream before a CUDA graph is captured

StepHook = Callable[[int, int, int], None]  # (epoch, step, steps_per_epoch), 1-based
EpochHook = Callable[[int, dict[str, float]], None]  # (epoch, logs), 1-based

# losses whose fused form the engine computes from the final activation's input
_FUSABLE = {
    ("sparse_categorical_crossentropy", "softmax"),
    ("categorical_crossentropy", "softmax"),
    ("binary_crossentropy", "sigmoid"),
}


@dataclass(frozen=True)
class CompileConfig(Checked):
    """A normalized `spec["compile"]`: optimizer, loss and metrics, each as the service
    normalized it (objects with every key, canonical names)."""

    optimizer: Mapping[str, Any]
    loss: Mapping[str, Any]
    metrics: list[str]


@dataclass(frozen=True)
class FitConfig(Checked):
    """A normalized `spec["fit"]`; `batch_size` None is the whole training set."""

    epochs: int
    batch_size: Annotated[int | None, count(ge=1)]
    validation_split: Annotated[float, real(ge=0, lt=1)]  # the rows trained on must be ≥ 0
    shuffle: bool
    early_stopping: Mapping[str, Any] | None
    normalize: bool

    def train_rows(self, n_rows: int, has_validation_data: bool) -> int:
        """Rows trained on: Keras' split keeps the first ⌊n·(1 − validation_split)⌋."""
        if has_validation_data or not self.validation_split:
            return n_rows
        return int(math.floor(n_rows * (1.0 - self.validation_split)))

    def steps(self, n_train: int) -> int:
        return 1 if self.batch_size is None else -(-n_train // self.batch_size)


class Trainer:
    """Trains one model on one device, as Keras' `Model.fit` would.

    Public state (read it; the trainer moves it): `epoch` (epochs completed), `step`
    (steps completed in the current epoch), `history`, `steps_per_epoch` (None until
    `fit` has the data; `steps_for(n_rows)` computes it beforehand).
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        compile: Mapping[str, Any],
        fit: Mapping[str, Any],
        seed: int = 0,
        device: str | torch.device | None = None,
        *,
        cuda_graph: bool = True,
    ):
        self.device = torch.device(device or default_device())
        self.seed = int(seed)
        self._spec = {"model": model, "compile": compile, "fit": fit, "seed": self.seed}
        self.fit_config = read(FitConfig, fit, "fit")
        compile_config = read(CompileConfig, compile, "compile")
        self.model = Model(model, self.seed, self.device)
        self.loss = losses.get(compile_config.loss)
        self.metrics = [metrics.get(m) for m in compile_config.metrics]
        if (
            self.loss.name,
            self.model.final_activation(),
        ) in _FUSABLE and not self.loss.from_logits:
            self.model.fuse_final_activation()
            self.loss.from_logits = True
        self.optimizer = optimizers.Optimizer(
            optimizers.make_config(compile_config.optimizer),
            [self.model.flat_params],
            # one flat tensor: on the CPU the per-tensor path is the fast one (no foreach
            # kernels there); on CUDA the foreach path is what a graph captures
            foreach=self.device.type == "cuda",
        )
        self.early_stopping = EarlyStopping.from_spec(self.fit_config.early_stopping)
        self.cuda_graph = cuda_graph
        # on CUDA, Adam reads its step-dependent scalars from device tensors whether the
        # step runs eagerly or replays a graph, so both do the same arithmetic
        self._adam_scalars: tuple[Tensor, Tensor] | None = None
        if self.device.type == "cuda" and isinstance(self.optimizer.config, optimizers.AdamConfig):
            self._adam_scalars = (
                torch.ones((), device=self.device),
                torch.ones((), device=self.device),
            )
        self._shuffle_gen = torch.Generator().manual_seed(
            derive_seed(self.seed, SEED_STREAM_SHUFFLE)
        )
        self._dropout_gen = torch.Generator(self.device).manual_seed(
            derive_seed(self.seed, SEED_STREAM_DROPOUT)
        )
        self._train_ctx = Context(training=True, reuse=True, generator=self._dropout_gen)
        self._eval_ctx = Context(training=False, reuse=True)
        # progress
        self.epoch = 0
        self.step = 0
        self.history: dict[str, list[float]] = {}
        self.stop_training = False
        self.steps_per_epoch: int | None = None
        self._perm: Tensor | None = None
        self._stats: Tensor | None = None
        self._epoch_seconds = 0.0  # this epoch's time before the current fit call
        self._train_seconds = 0.0
        self._norm: tuple[Tensor, Tensor] | None = None
        self._graph: _StepGraph | None = None
        self._segment_start: float | None = None  # perf_counter when this stretch of steps began

    # ---------------------------------------------------------------------- data

    def steps_for(self, n_rows: int, has_validation_data: bool = False) -> int:
        """Steps per epoch for a training set of n_rows (before validation_split)."""
        return self.fit_config.steps(self.fit_config.train_rows(n_rows, has_validation_data))

    def _targets(self, y: Any, n: int, what: str) -> Tensor:
        """y in the form the loss and metrics take (see losses.py), on the device."""
        k = self.model.output_dim
        arr = np.asarray(y)
        if arr.shape[0] != n:
            raise DataError(f"{what} has {arr.shape[0]} rows but x has {n}")
        if arr.dtype.kind not in "biuf":
            raise DataError(f"{what} is not numeric (dtype {arr.dtype})")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise DataError(f"{what} holds NaN or Inf values")
        classes = self.loss.name in ("sparse_categorical_crossentropy", "categorical_crossentropy")
        if classes and (arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1 and k > 1)):
            labels = arr.reshape(-1)
            if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
                raise DataError(f"{what} holds non-integer class labels")
            labels = labels.astype(np.int64)
            if labels.min() < 0 or labels.max() >= k:
                raise DataError(
                    f"{what} labels must be in [0, {k - 1}] for {k} output units, "
                    f"got {labels.min()}..{labels.max()}"
                )
            t = torch.from_numpy(labels).view(-1, 1)
            if self.loss.name == "categorical_crossentropy":  # a documented convenience
                t = torch.zeros(n, k).scatter_(1, t, 1.0)
            return t.to(self.device)
        if self.loss.name == "sparse_categorical_crossentropy":
            raise DataError(f"{what} must be class indices of shape [n], got {list(arr.shape)}")
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2 or arr.shape[1] != k:
            raise DataError(
                f"{what} must have shape [n, {k}] (or [n] for one unit), got {list(arr.shape)}"
            )
        if self.loss.name == "binary_crossentropy" and not ((arr >= 0) & (arr <= 1)).all():
            raise DataError(f"{what} must hold labels in [0, 1] for binary_crossentropy")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not arr.flags.writeable:  # a memory-mapped dataset: torch wants writable memory
            arr = arr.copy()
        return torch.from_numpy(arr).to(self.device)

    def _prepare(self, x: Any, y: Any, validation_data: tuple[Any, Any] | None) -> None:
        xa = check_features(x, self.model.input_dim)
        n = xa.shape[0]
        n_train = self.fit_config.train_rows(n, validation_data is not None)
        if n_train < 1:
            raise DataError(f"validation_split leaves no training rows out of {n}")
        y_all = self._targets(y, n, "y")
        self._x = torch.from_numpy(xa[:n_train]).to(self.device)
        self._y = y_all[:n_train]
        if validation_data is not None:
            xv = check_features(validation_data[0], self.model.input_dim, "validation x")
            self._xv: Tensor | None = torch.from_numpy(xv).to(self.device)
            self._yv: Tensor | None = self._targets(validation_data[1], xv.shape[0], "validation y")
        elif n_train < n:
            self._xv, self._yv = torch.from_numpy(xa[n_train:]).to(self.device), y_all[n_train:]
        else:
            self._xv = self._yv = None
        if self.fit_config.normalize:
            rows = xa[:n_train].astype(np.float64)
            mean, std = rows.mean(axis=0), rows.std(axis=0)
            std[std == 0] = 1.0
            self._norm = (
                torch.from_numpy(mean.astype(np.float32)).to(self.device),
                torch.from_numpy(std.astype(np.float32)).to(self.device),
            )
            self._x = self._normalized(self._x)
            if self._xv is not None:
                self._xv = self._normalized(self._xv)
        self.n_train = n_train
        self.batch_size = self.fit_config.batch_size or n_train
        self.steps_per_epoch = self.fit_config.steps(n_train)
        self._stats = torch.zeros(self.steps_per_epoch, 1 + len(self.metrics), device=self.device)
        self._cells = [row.unbind(0) for row in self._stats.unbind(0)]
        self._batches: dict[int, tuple[Tensor, Tensor]] = {}
        self._graph = None

    def _normalized(self, x: Tensor) -> Tensor:
        assert self._norm is not None
        mean, std = self._norm
        return (x - mean).div_(std)

    # ---------------------------------------------------------------------- fit

    @torch.no_grad()
    def fit(
        self,
        x: Any,
        y: Any,
        validation_data: tuple[Any, Any] | None = None,
        on_step_end: StepHook | None = None,
        on_epoch_end: EpochHook | None = None,
        resume_from: bytes | None = None,
    ) -> dict[str, list[float]]:
        """Train; returns Keras' `History.history`: {"loss": [...], "accuracy": [...],
        "val_loss": [...], ..., "seconds": [...], "samples_per_second": [...]}.

        Hooks run between steps; an exception a hook raises propagates at once and
        leaves the trainer consistent (`checkpoint()` then resumes after the last
        completed step). `resume_from` is a `checkpoint()` of the same spec and data.
        """
        self._prepare(x, y, validation_data)
        if resume_from is not None:
            self._restore(resume_from)
        while self.epoch < self.fit_config.epochs and not self.stop_training:
            self._run_epoch(on_step_end, on_epoch_end)
        es = self.early_stopping
        if es is not None and es.restore_best_weights and es.best_weights is not None:
            self.model.load_named_tensors(es.best_weights)
        return self.history

    def _run_epoch(self, on_step_end: StepHook | None, on_epoch_end: EpochHook | None) -> None:
        assert self._stats is not None and self.steps_per_epoch is not None
        self._segment_start = started = time.perf_counter()
        if self.step == 0 and self._perm is None:
            self._stats.zero_()
            self._epoch_seconds = self._train_seconds = 0.0
            if self.fit_config.shuffle:
                self._perm = torch.randperm(self.n_train, generator=self._shuffle_gen).to(
                    self.device
                )
            else:
                self._perm = torch.empty(0, dtype=torch.int64)  # unused: batches are slices
        epoch, steps = self.epoch + 1, self.steps_per_epoch
        checked = 0
        try:
            for s in range(self.step, steps):
                self._train_step(s)
                self.step = s + 1
                if self.step - checked >= NONFINITE_CHECK_STEPS:
                    self._check_finite(checked, self.step)
                    checked = self.step
                if on_step_end is not None:
                    on_step_end(epoch, self.step, steps)
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            trained = time.perf_counter()
            self._train_seconds += trained - started
            self._epoch_seconds += trained - started
            self._segment_start = None
        self._check_finite(0, steps)
        logs = self._epoch_logs()
        self._epoch_seconds += time.perf_counter() - trained
        logs["seconds"] = self._epoch_seconds
        logs["samples_per_second"] = (
            self.n_train / self._train_seconds if self._train_seconds else 0.0
        )
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)
        es = self.early_stopping
        if es is not None and es.update(epoch, logs, self.model.named_tensors()):
            self.stop_training = True
        self.epoch, self.step, self._perm = epoch, 0, None
        self._epoch_seconds = self._train_seconds = 0.0
        if on_epoch_end is not None:
            on_epoch_end(epoch, dict(logs))

    def _train_step(self, s: int) -> None:
        lo = s * self.batch_size
        hi = min(lo + self.batch_size, self.n_train)
        try:
            xb, yb = self._batch(lo, hi)
            if self._adam_scalars is not None:  # outside any graph: the values change
                cfg: Any = self.optimizer.config
                step_size, bc2_sqrt = optimizers._adam_scalars(cfg, self.optimizer.state.step + 1)
                self._adam_scalars[0].fill_(step_size)
                self._adam_scalars[1].fill_(bc2_sqrt)
            graph = self._graph_for(hi - lo)
            if graph is None:
                self._step(xb, yb, self._cells[s])
            elif graph.warming_up():
                graph.warmup_step(xb, yb, self._cells[s])
            else:
                graph.replay(self._cells[s])
        except (RuntimeError, torch.OutOfMemoryError) as e:
            raise TrainingError(
                f"training step failed at epoch {self.epoch + 1}, step {s + 1}: {e}",
                epoch=self.epoch + 1,
                step=s + 1,
            ) from e

    def _batch(self, lo: int, hi: int) -> tuple[Tensor, Tensor]:
        if not self.fit_config.shuffle:
            return self._x[lo:hi], self._y[lo:hi]
        n = hi - lo
        bufs = self._batches.get(n)
        if bufs is None:
            bufs = self._batches[n] = (
                torch.empty(n, self._x.shape[1], device=self.device),
                torch.empty(n, self._y.shape[1], dtype=self._y.dtype, device=self.device),
            )
        assert self._perm is not None
        idx = self._perm[lo:hi]
        torch.index_select(self._x, 0, idx, out=bufs[0])
        torch.index_select(self._y, 0, idx, out=bufs[1])
        return bufs

    def _step(self, xb: Tensor, yb: Tensor, cells: tuple[Tensor, ...]) -> None:
        """One training step; writes Σloss and Σmetrics over the batch into `cells`."""
        model = self.model
        out = model.forward(xb, self._train_ctx)
        dout = self.loss.total_and_grad(out, yb, cells[0])
        for metric, cell in zip(self.metrics, cells[1:], strict=True):
            metric.total(out, yb, cell, self.loss.from_logits, model.fused_activation)
        if model.regularized:
            penalty = model.penalty()
            assert penalty is not None
            cells[0].add_(penalty, alpha=xb.shape[0])  # the batch's mean loss + penalty
        model.backward(dout)
        if self._adam_scalars is not None:
            opt = self.optimizer
            cfg: Any = opt.config
            grads = [model.flat_grads]
            optimizers.adam_update_foreach(cfg, opt.state, opt.params, grads, self._adam_scalars)
        else:
            self.optimizer.step([model.flat_grads])

    def _check_finite(self, lo: int, hi: int) -> None:
        assert self._stats is not None
        losses_ = self._stats[lo:hi, 0]
        if bool(torch.isfinite(losses_).all()):
            return
        bad = lo + int((~torch.isfinite(losses_)).nonzero()[0, 0])
        value = float(self._stats[bad, 0])
        epoch, step = self.epoch + 1, bad + 1
        raise TrainingError(
            f"loss is {value} at epoch {epoch}, step {step}: training diverged "
            "(try a lower learning rate or fit.normalize)",
            epoch=epoch,
            step=step,
        )

    def _epoch_logs(self) -> dict[str, float]:
        assert self._stats is not None
        sums = self._stats.to("cpu", torch.float64).sum(dim=0).tolist()
        logs = {"loss": sums[0] / self.n_train}
        for metric, total in zip(self.metrics, sums[1:], strict=True):
            logs[metric.name] = total / self.n_train
        if self._xv is not None and self._yv is not None:
            for k, v in self._evaluate_tensors(self._xv, self._yv).items():
                logs[f"val_{k}"] = v
        return logs

    # ---------------------------------------------------------------- CUDA graph

    def _graph_for(self, n: int) -> _StepGraph | None:
        """The captured step for full batches on CUDA (None: run eagerly)."""
        if (
            not self.cuda_graph
            or self.device.type != "cuda"
            or n != self.batch_size
            or self.model.has_dropout
        ):
            return None
        if self._graph is None:
            self._graph = _StepGraph(self)
        return self._graph

    # ---------------------------------------------------------------------- evaluate

    def _evaluate_tensors(self, x: Tensor, y: Tensor) -> dict[str, float]:
        n = x.shape[0]
        cells = torch.zeros(1 + len(self.metrics), device=self.device)
        part = torch.zeros_like(cells)
        views = part.unbind(0)
        for lo in range(0, n, PREDICT_BATCH_ROWS):
            xb, yb = x[lo : lo + PREDICT_BATCH_ROWS], y[lo : lo + PREDICT_BATCH_ROWS]
            out = self.model.forward(xb, self._eval_ctx)
            views[0].copy_(self.loss.total(out, yb))
            for metric, cell in zip(self.metrics, views[1:], strict=True):
                metric.total(out, yb, cell, self.loss.from_logits, self.model.fused_activation)
            cells.add_(part)
        sums = cells.to("cpu", torch.float64).tolist()
        logs = {"loss": sums[0] / n}
        penalty = self.model.penalty()
        if penalty is not None:
            logs["loss"] += float(penalty)
        for metric, total in zip(self.metrics, sums[1:], strict=True):
            logs[metric.name] = total / n
        return logs

    @torch.no_grad()
    def evaluate(self, x: Any, y: Any) -> dict[str, float]:
        """Keras' `evaluate`: {"loss": …, "accuracy": …} over (x, y), regularization included."""
        xt = torch.from_numpy(check_features(x, self.model.input_dim)).to(self.device)
        yt = self._targets(y, xt.shape[0], "y")
        if self.fit_config.normalize:
            self._norm_stats()
            xt = self._normalized(xt)
        return self._evaluate_tensors(xt, yt)

    @torch.no_grad()
    def predict(self, x: Any) -> np.ndarray:
        """The final layer's outputs [n, units] (softmax probabilities, …) as float32."""
        xt = torch.from_numpy(check_features(x, self.model.input_dim))
        mean, std = self._norm_stats() if self.fit_config.normalize else (None, None)
        return predict_tensor(self.model, xt, mean, std, reuse=True)

    def _norm_stats(self) -> tuple[Tensor, Tensor]:
        if self._norm is None:
            raise TrainingError("fit.normalize is on but the model has not been fit")
        return self._norm

    # ---------------------------------------------------------------------- export

    def export_safetensors(self, metadata: Mapping[str, str] | None = None) -> bytes:
        """The trained model, SPEC names: `layers.{i}.kernel` [in, out], `layers.{i}.bias`, …,
        `normalization.mean/std` when fit.normalize is on; `metadata` goes in the header."""
        tensors = {
            k: t.detach().to("cpu", copy=True) for k, t in self.model.named_tensors().items()
        }
        if self.fit_config.normalize:
            mean, std = self._norm_stats()
            tensors["normalization.mean"], tensors["normalization.std"] = mean.cpu(), std.cpu()
        return safetensors.torch.save(tensors, metadata=dict(metadata or {}))

    # ---------------------------------------------------------------- checkpoints

    def _fingerprint(self) -> str:
        blob = json.dumps(self._spec, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def checkpoint(self) -> bytes:
        """Everything a resumed fit needs to continue bit for bit: weights, optimizer
        state, RNG states, this epoch's permutation and per-step sums, early-stopping
        state, epoch and step, history. Call it between steps (in a hook, or after a
        hook's exception); safetensors bytes, no pickle."""
        if self._stats is None:
            raise TrainingError("checkpoint() needs a fit in progress")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        inflight = 0.0 if self._segment_start is None else now - self._segment_start
        tensors: dict[str, Tensor] = {
            f"model.{k}": t for k, t in self.model.named_tensors().items()
        }
        tensors.update(self.optimizer.state_tensors())
        tensors["rng.shuffle"] = self._shuffle_gen.get_state()
        tensors["rng.dropout"] = self._dropout_gen.get_state()
        tensors["epoch.stats"] = self._stats
        if self._perm is not None and self.fit_config.shuffle:
            tensors["epoch.perm"] = self._perm
        if self._norm is not None:
            tensors["normalization.mean"], tensors["normalization.std"] = self._norm
        es = self.early_stopping
        if es is not None and es.best_weights is not None:
            tensors.update({f"early_stopping.best.{k}": t for k, t in es.best_weights.items()})
        meta = {
            "fingerprint": self._fingerprint(),
            "epoch": self.epoch,
            "step": self.step,
            "mid_epoch": self._perm is not None,
            "n_train": self.n_train,
            "optimizer_step": self.optimizer.state.step,
            "history": self.history,
            "stop_training": self.stop_training,
            "early_stopping": es.state() if es is not None else None,
            "epoch_seconds": self._epoch_seconds + inflight,
            "train_seconds": self._train_seconds + inflight,
        }
        return ckpt.pack(tensors, meta)

    def _restore(self, data: bytes) -> None:
        tensors, meta = ckpt.unpack(data)
        if meta["fingerprint"] != self._fingerprint():
            raise TrainingError("the checkpoint is from a different spec or seed")
        if meta["n_train"] != self.n_train:
            raise TrainingError(
                f"the checkpoint trained on {meta['n_train']} rows, not {self.n_train}"
            )
        self.model.load_named_tensors(tensors, prefix="model.")
        self.optimizer.load_state_tensors(meta["optimizer_step"], tensors)
        self._shuffle_gen.set_state(tensors["rng.shuffle"])
        self._dropout_gen.set_state(tensors["rng.dropout"])
        assert self._stats is not None
        self._stats.copy_(tensors["epoch.stats"])
        self.epoch, self.step = int(meta["epoch"]), int(meta["step"])
        self._perm = None
        if meta["mid_epoch"]:
            perm = tensors.get("epoch.perm")
            self._perm = (
                perm.to(self.device) if perm is not None else torch.empty(0, dtype=torch.int64)
            )
        if "normalization.mean" in tensors:
            self._norm = (
                tensors["normalization.mean"].to(self.device),
                tensors["normalization.std"].to(self.device),
            )
        self.history = {k: list(v) for k, v in meta["history"].items()}
        self.stop_training = bool(meta["stop_training"])
        self._epoch_seconds = float(meta["epoch_seconds"])
        self._train_seconds = float(meta["train_seconds"])
        es = self.early_stopping
        if es is not None and meta["early_stopping"] is not None:
            prefix = "early_stopping.best."
            best = {
                k[len(prefix) :]: t.to(self.device)
                for k, t in tensors.items()
                if k.startswith(prefix)
            }
            es.load_state(meta["early_stopping"], best or None)


class _StepGraph:
    """A CUDA graph of one whole training step for full batches (SPEC §6).

    The first GRAPH_WARMUP_STEPS full-batch steps run eagerly on a side stream (real
    steps); the next is captured, then every full batch replays it. Outside the graph,
    per step: the batch is gathered into the static buffers, Adam's step-dependent
    scalars are filled into their device tensors, and the step's sums are copied from
    static cells into its row of `stats`. A partial last batch runs eagerly. Not used
    with dropout (the mask's generator would need registering with the graph).
    """

    def __init__(self, trainer: Trainer):
        self.t = trainer
        self.warm = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.cells = torch.zeros(1 + len(trainer.metrics), device=trainer.device).unbind(0)
        self.stream = torch.cuda.Stream(trainer.device)

    def _static_batch(self) -> tuple[Tensor, Tensor]:
        t = self.t
        # without shuffle the batches are slices (views): give the graph its own buffers
        if not t.fit_config.shuffle and t.batch_size not in t._batches:
            t._batches[t.batch_size] = (
                torch.empty(t.batch_size, t._x.shape[1], device=t.device),
                torch.empty(t.batch_size, t._y.shape[1], dtype=t._y.dtype, device=t.device),
            )
        return t._batches[t.batch_size]

    def warming_up(self) -> bool:
        return self.warm < GRAPH_WARMUP_STEPS

    def warmup_step(self, xb: Tensor, yb: Tensor, row_cells: tuple[Tensor, ...]) -> None:
        """A real step, eager, on the side stream the capture will use (CUDA graph practice)."""
        current = torch.cuda.current_stream(self.t.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            self.t._step(xb, yb, row_cells)
        current.wait_stream(self.stream)
        self.warm += 1

    def replay(self, row_cells: tuple[Tensor, ...]) -> None:
        t = self.t
        xb, yb = self._static_batch()
        if not t.fit_config.shuffle:
            lo = t.step * t.batch_size
            xb.copy_(t._x[lo : lo + t.batch_size])
            yb.copy_(t._y[lo : lo + t.batch_size])
        if self.graph is None:
            self._capture(xb, yb)
        assert self.graph is not None
        self.graph.replay()
        t.optimizer.state.step += 1
        for dst, src in zip(row_cells, self.cells, strict=True):
            dst.copy_(src)

    def _capture(self, xb: Tensor, yb: Tensor) -> None:
        t = self.t
        step_before = t.optimizer.state.step
        current = torch.cuda.current_stream(t.device)
        self.stream.wait_stream(current)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            t._step(xb, yb, self.cells)
        current.wait_stream(self.stream)
        t.optimizer.state.step = step_before  # capture records the step, it does not run it
        self.graph = graph
