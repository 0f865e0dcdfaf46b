"""The checkpoint file: safetensors bytes, JSON metadata in the header; no pickle.

Tensors (all on the CPU in the file):
    model.layers.{i}.{name}          weights and buffers, by their exported names
    optimizer.{slot}.{j}             optimizer slots, j = the parameter's position
    rng.shuffle, rng.dropout         torch.Generator states (uint8)
    epoch.perm                       this epoch's shuffle permutation (mid-epoch only)
    epoch.stats                      per-step sums [steps, 1 + metrics]: loss, metrics
    normalization.mean/std           fit.normalize's training statistics
    early_stopping.best.layers.…     restore_best_weights' copy of the best weights

Metadata: one key, `fitq_checkpoint`, holding a JSON object: the format version, the
run's fingerprint, epoch, step, whether mid-epoch, training rows, the optimizer's step
and host numbers (the current learning rate, NAdam's μ product), History so far, early
stopping's and ReduceLROnPlateau's state, the epoch's elapsed time (see `Checkpoint`).
The last two are newer than the format's version 1: a checkpoint without them (an older
one, or a pack's) resumes with their starting values, which are then the right ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import safetensors.torch
from torch import Tensor

from fitq.worker.engine.errors import TrainingError

FORMAT_VERSION = 1
METADATA_KEY = "fitq_checkpoint"
_BEST = "early_stopping.best."


def fingerprint(
    model: Mapping[str, Any], compile: Mapping[str, Any], fit: Mapping[str, Any], seed: int
) -> str:
    """The hash a checkpoint carries of the run it belongs to (its spec and seed)."""
    run = {"model": model, "compile": compile, "fit": fit, "seed": int(seed)}
    return hashlib.sha256(json.dumps(run, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Checkpoint:
    """Everything a resumed fit needs to continue bit for bit, by what it is."""

    fingerprint: str
    weights: dict[str, Tensor]  # the model's, by exported name
    optimizer: dict[str, Tensor]  # its slots, `optimizer.{slot}.{j}`
    optimizer_step: int
    rng: dict[str, Tensor]  # generator states: "shuffle", "dropout"
    epoch: int  # epochs completed
    step: int  # steps completed in the current epoch
    mid_epoch: bool  # the epoch has begun (its permutation and sums are live)
    stats: Tensor  # this epoch's per-step sums
    perm: Tensor | None  # this epoch's shuffle permutation, when shuffled and mid-epoch
    n_train: int
    history: dict[str, list[float]]
    stop_training: bool
    epoch_seconds: float
    train_seconds: float
    normalization: tuple[Tensor, Tensor] | None  # fit.normalize's mean and std
    early_stopping: dict[str, Any] | None  # EarlyStopping.state()
    best_weights: dict[str, Tensor] | None  # restore_best_weights' copy
    optimizer_numbers: dict[str, float] = field(default_factory=dict)  # host_numbers()
    reduce_lr_on_plateau: dict[str, Any] | None = None  # ReduceLROnPlateau.state()

    def to_bytes(self) -> bytes:
        tensors: dict[str, Tensor] = {f"model.{k}": t for k, t in self.weights.items()}
        tensors.update(self.optimizer)
        tensors.update({f"rng.{k}": t for k, t in self.rng.items()})
        tensors["epoch.stats"] = self.stats
        if self.perm is not None:
            tensors["epoch.perm"] = self.perm
        if self.normalization is not None:
            tensors["normalization.mean"], tensors["normalization.std"] = self.normalization
        if self.best_weights is not None:
            tensors.update({f"{_BEST}{k}": t for k, t in self.best_weights.items()})
        meta = {
            "fingerprint": self.fingerprint,
            "epoch": self.epoch,
            "step": self.step,
            "mid_epoch": self.mid_epoch,
            "n_train": self.n_train,
            "optimizer_step": self.optimizer_step,
            "history": self.history,
            "stop_training": self.stop_training,
            "early_stopping": self.early_stopping,
            "optimizer_numbers": self.optimizer_numbers,
            "reduce_lr_on_plateau": self.reduce_lr_on_plateau,
            "epoch_seconds": self.epoch_seconds,
            "train_seconds": self.train_seconds,
        }
        return pack(tensors, meta)

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        tensors, meta = unpack(data)

        def having(prefix: str) -> dict[str, Tensor]:
            return {k[len(prefix) :]: t for k, t in tensors.items() if k.startswith(prefix)}

        mean, std = tensors.get("normalization.mean"), tensors.get("normalization.std")
        return cls(
            fingerprint=meta["fingerprint"],
            weights=having("model."),
            optimizer={k: t for k, t in tensors.items() if k.startswith("optimizer.")},
            optimizer_step=int(meta["optimizer_step"]),
            rng=having("rng."),
            epoch=int(meta["epoch"]),
            step=int(meta["step"]),
            mid_epoch=bool(meta["mid_epoch"]),
            stats=tensors["epoch.stats"],
            perm=tensors.get("epoch.perm"),
            n_train=int(meta["n_train"]),
            history={k: list(v) for k, v in meta["history"].items()},
            stop_training=bool(meta["stop_training"]),
            epoch_seconds=float(meta["epoch_seconds"]),
            train_seconds=float(meta["train_seconds"]),
            normalization=(mean, std) if mean is not None and std is not None else None,
            early_stopping=meta["early_stopping"],
            best_weights=having(_BEST) or None,
            optimizer_numbers=dict(meta.get("optimizer_numbers") or {}),
            reduce_lr_on_plateau=meta.get("reduce_lr_on_plateau"),
        )


def pack(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> bytes:
    cpu = {k: t.detach().to("cpu", copy=True).contiguous() for k, t in tensors.items()}
    header = {METADATA_KEY: json.dumps({"version": FORMAT_VERSION, **meta}, sort_keys=True)}
    return safetensors.torch.save(cpu, metadata=header)


def unpack(data: bytes) -> tuple[dict[str, Tensor], dict[str, Any]]:
    try:
        tensors = safetensors.torch.load(data)
        header = _metadata(data)
        meta = json.loads(header[METADATA_KEY])
    except Exception as e:  # a truncated or foreign file
        raise TrainingError(f"not a fitq checkpoint: {e}") from None
    if meta.get("version") != FORMAT_VERSION:
        raise TrainingError(f"checkpoint format {meta.get('version')!r} is not {FORMAT_VERSION}")
    return tensors, meta


def _metadata(data: bytes) -> dict[str, str]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n])["__metadata__"]
