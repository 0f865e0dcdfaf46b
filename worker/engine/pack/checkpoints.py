"""A member's checkpoint, in the solo trainer's format (`checkpoint.Checkpoint`): what a
solo `Trainer.checkpoint()` holds at the same point of the same run, so a member resumes
solo, in this pack or in another one. Weights and optimizer slots are written in the
pack's dtype (a solo trainer casts them as it loads them)."""

from __future__ import annotations

import torch
from torch import Tensor

from fitq.worker.engine.errors import TrainingError
from fitq.worker.engine.pack import solo
from fitq.worker.engine.pack.member import Member
from fitq.worker.engine.pack.network import Network


def write(m: Member, net: Network, step: int, opt_step: int, stats: Tensor) -> bytes:
    """The checkpoint of `m` after `step` steps of its current epoch (`opt_step` updates in
    all), `stats` its per-step sums [steps, 1 + metrics] so far."""
    es = m.early_stopping
    return solo.Checkpoint(
        fingerprint=solo.fingerprint(m.spec),
        weights=net.named(m.flat),
        optimizer={f"optimizer.{s}.0": net.solo_flat(t) for s, t in m.slots.items()},
        optimizer_step=opt_step,
        rng={"shuffle": m.shuffle_gen.get_state(), "dropout": m.dropout_gen.get_state()},
        epoch=m.epoch,
        step=step,
        mid_epoch=m.perm is not None,
        stats=stats,
        perm=m.perm if m.perm is not None and m.fit.shuffle else None,
        n_train=m.n_train,
        history=m.history,
        stop_training=m.stop_training,
        epoch_seconds=m.epoch_seconds,
        train_seconds=m.train_seconds,
        normalization=m.norm,
        early_stopping=es.state() if es is not None else None,
        best_weights=es.best_weights if es is not None else None,
    ).to_bytes()


def read(m: Member, net: Network, data: bytes) -> None:
    """Put a checkpoint's state into `m` (fresh from its spec and data), or raise
    TrainingError when it is another run's."""
    c = solo.Checkpoint.from_bytes(data)
    if c.fingerprint != solo.fingerprint(m.spec):
        raise TrainingError("the checkpoint is from a different spec or seed")
    if c.n_train != m.n_train:
        raise TrainingError(f"the checkpoint trained on {c.n_train} rows, not {m.n_train}")
    for name, t in net.named(m.flat).items():
        src = c.weights.get(name)
        if src is None or tuple(src.shape) != tuple(t.shape):
            raise TrainingError(f"the checkpoint's model.{name} does not fit the model")
        t.copy_(src)
    for slot, row in m.slots.items():
        flat = c.optimizer.get(f"optimizer.{slot}.0")
        if flat is None:
            raise TrainingError(f"the checkpoint has no tensor 'optimizer.{slot}.0'")
        try:
            net.load_solo_flat(row, flat)
        except ValueError as e:
            raise TrainingError(f"optimizer.{slot}.0: {e}") from None
    m.opt_step = c.optimizer_step
    m.shuffle_gen.set_state(c.rng["shuffle"])
    m.dropout_gen.set_state(c.rng["dropout"])
    m.epoch, m.step = c.epoch, c.step
    m.epoch_stats = c.stats.to(m.flat.device, m.flat.dtype)
    m.perm = None
    if c.mid_epoch:
        m.perm = c.perm if c.perm is not None else torch.arange(m.n_train)
    m.history = c.history
    m.stop_training = c.stop_training
    m.epoch_seconds, m.train_seconds = c.epoch_seconds, c.train_seconds
    es = m.early_stopping
    if es is not None and c.early_stopping is not None:
        best = c.best_weights
        es.load_state(
            c.early_stopping, {k: t.to(m.flat) for k, t in best.items()} if best else None
        )
