"""A member's checkpoint, in the solo trainer's format (worker/engine/checkpoint.py): the
same tensors and metadata a solo `Trainer.checkpoint()` writes at the same point of the
same run, so a member resumes solo, in this pack or in another one.

A checkpoint holds the member's weights and optimizer slots in the pack's dtype (the
solo trainer casts them on load); the rest is as the solo run keeps it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fitq.worker.engine import checkpoint as ckpt
from fitq.worker.engine.errors import TrainingError
from fitq.worker.engine.pack import solo
from fitq.worker.engine.pack.member import Member
from fitq.worker.engine.pack.network import Network

_BEST = "early_stopping.best."


def write(m: Member, net: Network, step: int, opt_step: int, stats: Tensor) -> bytes:
    """The checkpoint of `m` after `step` steps of its current epoch (`opt_step` updates in
    all), `stats` its per-step sums [steps, 1 + metrics] so far."""
    tensors: dict[str, Tensor] = {f"model.{k}": t for k, t in net.named(m.flat).items()}
    tensors.update({f"optimizer.{slot}.0": net.solo_flat(t) for slot, t in m.slots.items()})
    tensors["rng.shuffle"] = m.shuffle_gen.get_state()
    tensors["rng.dropout"] = m.dropout_gen.get_state()
    tensors["epoch.stats"] = stats
    if m.perm is not None and m.fit.shuffle:
        tensors["epoch.perm"] = m.perm
    if m.norm is not None:
        tensors["normalization.mean"], tensors["normalization.std"] = m.norm
    es = m.early_stopping
    if es is not None and es.best_weights is not None:
        tensors.update({_BEST + k: t for k, t in es.best_weights.items()})
    meta = {
        "fingerprint": solo.fingerprint(m.spec),
        "epoch": m.epoch,
        "step": step,
        "mid_epoch": m.perm is not None,
        "n_train": m.n_train,
        "optimizer_step": opt_step,
        "history": m.history,
        "stop_training": m.stop_training,
        "early_stopping": es.state() if es is not None else None,
        "epoch_seconds": m.epoch_seconds,
        "train_seconds": m.train_seconds,
    }
    return ckpt.pack(tensors, meta)


def read(m: Member, net: Network, data: bytes) -> None:
    """Put a checkpoint's state into `m` (fresh from its spec and data), or raise
    TrainingError when it is another run's."""
    tensors, meta = ckpt.unpack(data)
    if meta["fingerprint"] != solo.fingerprint(m.spec):
        raise TrainingError("the checkpoint is from a different spec or seed")
    if meta["n_train"] != m.n_train:
        raise TrainingError(f"the checkpoint trained on {meta['n_train']} rows, not {m.n_train}")
    _load(net.named(m.flat), tensors, "model.")
    for slot, row in m.slots.items():
        flat = tensors.get(f"optimizer.{slot}.0")
        if flat is None:
            raise TrainingError(f"the checkpoint has no tensor 'optimizer.{slot}.0'")
        try:
            net.load_solo_flat(row, flat)
        except ValueError as e:
            raise TrainingError(f"optimizer.{slot}.0: {e}") from None
    m.opt_step = int(meta["optimizer_step"])
    m.shuffle_gen.set_state(tensors["rng.shuffle"])
    m.dropout_gen.set_state(tensors["rng.dropout"])
    m.epoch, m.step = int(meta["epoch"]), int(meta["step"])
    m.epoch_stats = tensors["epoch.stats"].to(m.flat.device, m.flat.dtype)
    m.perm = None
    if meta["mid_epoch"]:
        m.perm = tensors["epoch.perm"] if m.fit.shuffle else torch.arange(m.n_train)
    m.history = {k: list(v) for k, v in meta["history"].items()}
    m.stop_training = bool(meta["stop_training"])
    m.epoch_seconds = float(meta["epoch_seconds"])
    m.train_seconds = float(meta["train_seconds"])
    es = m.early_stopping
    if es is not None and meta["early_stopping"] is not None:
        best = {k[len(_BEST) :]: t.to(m.flat) for k, t in tensors.items() if k.startswith(_BEST)}
        es.load_state(meta["early_stopping"], best or None)


def _load(into: dict[str, Tensor], tensors: dict[str, Tensor], prefix: str) -> None:
    for name, t in into.items():
        src = tensors.get(prefix + name)
        if src is None:
            raise TrainingError(f"the checkpoint has no tensor {prefix + name!r}")
        if tuple(src.shape) != tuple(t.shape):
            raise TrainingError(f"{prefix + name}: shape {list(src.shape)}, not {list(t.shape)}")
        t.copy_(src)
