"""The Trainer: Keras' fit / evaluate / predict on the engine's layers and optimizers.

One training step, under torch.no_grad() (no autograd anywhere):

    xb, yb ← the next batch, gathered into preallocated buffers (data on the device)
    out    ← model.forward(xb)                   logits when the final activation is fused
    Σloss  ← loss.total_and_grad(out, yb)         written into this step's row of `stats`
    Σmetric← metric.total(out, yb)                (before the update, as Keras' History)
    grads  ← model.backward(∂loss/∂out)           + the regularizers' gradients
    params ← optimizer.apply(grads)                clip, decay, update (the foreach path on
                                                   CUDA); its begin_step() ran on the host
                                                   before the step: the step's learning rate

`stats` is a device tensor [steps_per_epoch, 1 + metrics] of per-step sums, so a
step never waits for the device: it is read once at the epoch end (and every
NONFINITE_CHECK_STEPS steps, to stop a diverged run early). A non-finite loss
raises TrainingError naming the first bad epoch and step, whenever it is found.

Epoch and step numbers given to hooks and errors are 1-based; `step` is the step
inside its epoch. Beside this module: `targets.py` (y as the loss takes it),
`cuda_graph.py` (the captured step on CUDA), `checkpoint.py` (the resume format).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import Tensor

from fitq.worker.engine import compiled, metrics
from fitq.worker.engine.callbacks import EarlyStopping, ReduceLROnPlateau
from fitq.worker.engine.checkpoint import Checkpoint, fingerprint
from fitq.worker.engine.config import read
from fitq.worker.engine.cuda_graph import Cells, StepGraph
from fitq.worker.engine.errors import ConfigError, TrainingError
from fitq.worker.engine.inputs import FitConfig, normalized, prepare, targets
from fitq.worker.engine.layers import Context
from fitq.worker.engine.model import (
    Model,
    check_features,
    default_device,
    dropout_generator,
    evaluate_tensors,
    predict_tensor,
    shuffle_generator,
)

NONFINITE_CHECK_STEPS = 100  # steps between checks of the loss for NaN/Inf (one device sync)

StepHook = Callable[[int, int, int], None]  # (epoch, step, steps_per_epoch), 1-based
EpochHook = Callable[[int, dict[str, float]], None]  # (epoch, logs), 1-based


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
        self._fingerprint = fingerprint(model, compile, fit, self.seed)  # of the run, for resume
        self.fit_config = read(FitConfig, fit, "fit")
        self.model = Model(model, self.seed, self.device)
        self.loss, self.metrics, self.optimizer = compiled.build(compile, self.model, self.device)
        self.early_stopping = EarlyStopping.from_spec(self.fit_config.early_stopping)
        self.reduce_lr = ReduceLROnPlateau.from_spec(self.fit_config.reduce_lr_on_plateau)
        if self.reduce_lr is not None and self.optimizer.schedule is not None:
            raise ConfigError(
                "fit.reduce_lr_on_plateau: the learning rate follows a schedule, which "
                "sets it at every step (Keras refuses to set a scheduled rate too)"
            )
        self.cuda_graph = cuda_graph
        self._shuffle_gen = shuffle_generator(self.seed)
        self._dropout_gen = dropout_generator(self.seed, self.device)
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
        self._graph: StepGraph | None = None
        self._segment_start: float | None = None  # perf_counter when this stretch of steps began

    # ---------------------------------------------------------------------- data

    def steps_for(self, n_rows: int, has_validation_data: bool = False) -> int:
        """Steps per epoch for a training set of n_rows (before validation_split)."""
        return self.fit_config.steps(self.fit_config.train_rows(n_rows, has_validation_data))

    def _targets(self, y: Any, n: int, what: str) -> Tensor:
        """y in the form the loss and metrics take (see targets.py), on the device."""
        return targets(y, n, what, self.loss.name, self.model.output_dim, self.device)

    def _prepare(self, x: Any, y: Any, validation_data: tuple[Any, Any] | None) -> None:
        dims = (self.model.input_dim, self.model.output_dim)
        data = prepare(x, y, validation_data, self.fit_config, self.loss.name, dims, self.device)
        self._x, self._y, self._xv, self._yv = data.x, data.y, data.xv, data.yv
        if data.norm is not None:
            self._norm = data.norm
        self.n_train = n_train = data.n_train
        self.batch_size = self.fit_config.batch_size or n_train
        self.steps_per_epoch = self.fit_config.steps(n_train)
        self._stats = torch.zeros(
            self.steps_per_epoch, metrics.width(self.metrics), device=self.device
        )
        self._cells = [metrics.cells(row, self.metrics) for row in self._stats.unbind(0)]
        self._batches: dict[int, tuple[Tensor, Tensor]] = {}
        self._graph = None

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
        if self.reduce_lr is not None:
            self.reduce_lr.log(logs, self.optimizer)
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
        if self.reduce_lr is not None:
            self.reduce_lr.update(logs, self.optimizer)
        self.epoch, self.step, self._perm = epoch, 0, None
        self._epoch_seconds = self._train_seconds = 0.0
        if on_epoch_end is not None:
            on_epoch_end(epoch, dict(logs))

    def _train_step(self, s: int) -> None:
        lo = s * self.batch_size
        hi = min(lo + self.batch_size, self.n_train)
        try:
            xb, yb = self._batch(lo, hi)
            self.optimizer.begin_step()  # outside any graph: the values change
            graph = self._graph_for(hi - lo)
            if graph is None:
                self._step(xb, yb, self._cells[s])
            elif graph.warming_up():
                graph.warmup_step(xb, yb, self._cells[s])
            else:
                graph.replay(xb, yb, self._cells[s])
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
            bufs = self._buffers(n)
        assert self._perm is not None
        idx = self._perm[lo:hi]
        torch.index_select(self._x, 0, idx, out=bufs[0])
        torch.index_select(self._y, 0, idx, out=bufs[1])
        return bufs

    def _buffers(self, n: int) -> tuple[Tensor, Tensor]:
        """The preallocated batch of n rows (x, y) on the device, made once per size."""
        bufs = self._batches.get(n)
        if bufs is None:
            bufs = self._batches[n] = (
                torch.empty(n, self._x.shape[1], device=self.device),
                torch.empty(n, self._y.shape[1], dtype=self._y.dtype, device=self.device),
            )
        return bufs

    def _step(self, xb: Tensor, yb: Tensor, cells: Cells) -> None:
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
        self.optimizer.apply([model.flat_grads])
        if model.constrained:  # Keras applies constraints right after the update
            model.constrain()

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
        logs |= metrics.results(self.metrics, sums, self.n_train)  # stateful ones: of counts
        if self._xv is not None and self._yv is not None:
            for k, v in self._evaluate_tensors(self._xv, self._yv).items():
                logs[f"val_{k}"] = v
        return logs

    # ---------------------------------------------------------------- CUDA graph

    def _graph_for(self, n: int) -> StepGraph | None:
        """The captured step for full batches on CUDA (None: run eagerly)."""
        if (
            not self.cuda_graph
            or self.device.type != "cuda"
            or n != self.batch_size
            or self.model.has_dropout
        ):
            return None
        if self._graph is None:
            self._graph = StepGraph(
                self._step,
                self._buffers(self.batch_size),  # where shuffled batches are gathered
                metrics.cells(
                    torch.zeros(metrics.width(self.metrics), device=self.device), self.metrics
                ),
                self.device,
            )
        return self._graph

    # ---------------------------------------------------------------------- evaluate

    def _evaluate_tensors(self, x: Tensor, y: Tensor) -> dict[str, float]:
        return evaluate_tensors(self.model, self.loss, self.metrics, x, y, self._eval_ctx)

    @torch.no_grad()
    def evaluate(self, x: Any, y: Any) -> dict[str, float]:
        """Keras' `evaluate`: {"loss": …, "accuracy": …} over (x, y), regularization included."""
        xt = torch.from_numpy(check_features(x, self.model.input_dim)).to(self.device)
        yt = self._targets(y, xt.shape[0], "y")
        if self.fit_config.normalize:
            xt = normalized(xt, self._norm_stats())
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
        """The trained model, fitq's names: `layers.{i}.kernel` [in, out], `layers.{i}.bias`, …,
        `normalization.mean/std` when fit.normalize is on; `metadata` goes in the header."""
        tensors = {
            k: t.detach().to("cpu", copy=True) for k, t in self.model.named_tensors().items()
        }
        if self.fit_config.normalize:
            mean, std = self._norm_stats()
            tensors["normalization.mean"], tensors["normalization.std"] = mean.cpu(), std.cpu()
        return safetensors.torch.save(tensors, metadata=dict(metadata or {}))

    # ---------------------------------------------------------------- checkpoints

    def checkpoint(self) -> bytes:
        """Everything a resumed fit needs to continue bit for bit: weights, optimizer
        state (its host numbers: the current learning rate, …), RNG states, this epoch's
        permutation and per-step sums, the callbacks' state, epoch and step, history.
        Call it between steps (in a hook, or after a hook's exception); safetensors
        bytes, no pickle (format: checkpoint.py)."""
        if self._stats is None:
            raise TrainingError("checkpoint() needs a fit in progress")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        inflight = 0.0 if self._segment_start is None else now - self._segment_start
        es = self.early_stopping
        return Checkpoint(
            fingerprint=self._fingerprint,
            weights=self.model.named_tensors(),
            optimizer=self.optimizer.state_tensors(),
            optimizer_step=self.optimizer.state.step,
            optimizer_numbers=self.optimizer.host_numbers(),
            rng={
                "shuffle": self._shuffle_gen.get_state(),
                "dropout": self._dropout_gen.get_state(),
            },
            epoch=self.epoch,
            step=self.step,
            mid_epoch=self._perm is not None,
            stats=self._stats,
            perm=self._perm if self._perm is not None and self.fit_config.shuffle else None,
            n_train=self.n_train,
            history=self.history,
            stop_training=self.stop_training,
            epoch_seconds=self._epoch_seconds + inflight,
            train_seconds=self._train_seconds + inflight,
            normalization=self._norm,
            early_stopping=es.state() if es is not None else None,
            best_weights=es.best_weights if es is not None else None,
            reduce_lr_on_plateau=self.reduce_lr.state() if self.reduce_lr is not None else None,
        ).to_bytes()

    def _restore(self, data: bytes) -> None:
        c = Checkpoint.from_bytes(data)
        if c.fingerprint != self._fingerprint:
            raise TrainingError("the checkpoint is from a different spec or seed")
        if c.n_train != self.n_train:
            raise TrainingError(f"the checkpoint trained on {c.n_train} rows, not {self.n_train}")
        self.model.load_named_tensors(c.weights)
        self.optimizer.load_state_tensors(c.optimizer_step, c.optimizer)
        self.optimizer.load_host_numbers(c.optimizer_numbers)
        self._shuffle_gen.set_state(c.rng["shuffle"])
        self._dropout_gen.set_state(c.rng["dropout"])
        assert self._stats is not None
        self._stats.copy_(c.stats)
        self.epoch, self.step = c.epoch, c.step
        self._perm = None
        if c.mid_epoch:  # unshuffled epochs keep an empty marker: batches are slices
            perm = c.perm
            self._perm = (
                perm.to(self.device) if perm is not None else torch.empty(0, dtype=torch.int64)
            )
        if c.normalization is not None:
            self._norm = (c.normalization[0].to(self.device), c.normalization[1].to(self.device))
        self.history = c.history
        self.stop_training = c.stop_training
        self._epoch_seconds, self._train_seconds = c.epoch_seconds, c.train_seconds
        es = self.early_stopping
        if es is not None and c.early_stopping is not None:
            best = c.best_weights
            es.load_state(
                c.early_stopping, {k: t.to(self.device) for k, t in best.items()} if best else None
            )
        if self.reduce_lr is not None and c.reduce_lr_on_plateau is not None:
            self.reduce_lr.load_state(c.reduce_lr_on_plateau)
