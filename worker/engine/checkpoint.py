"""The checkpoint file: safetensors bytes, JSON metadata in the header; no pickle.

Tensors (all on the CPU in the file):
    model.layers.{i}.{name}          weights and buffers, by their exported names
    optimizer.{slot}.{j}             optimizer slots, j = the parameter's position
    rng.shuffle, rng.dropout         torch.Generator states (uint8)
    epoch.perm                       this epoch's shuffle permutation (mid-epoch only)
    epoch.stats                      per-step sums [steps, 1 + metrics]: loss, metrics
    normalization.mean/std           fit.normalize's training statistics
    early_stopping.best.layers.…     restore_best_weights' copy of the best weights

Metadata: one key, `fitq_checkpoint`, holding a JSON object (see Trainer.checkpoint).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import safetensors.torch
from torch import Tensor

from fitq.worker.engine.errors import TrainingError

FORMAT_VERSION = 1
METADATA_KEY = "fitq_checkpoint"


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
