"""How many jobs a worker trains together in one pack (K).

``FITQ_PACK_MAX`` when set (``1`` turns packing off). Otherwise the device decides:

- CPU: ``CPU_PACK_MAX`` (16). A pack's gain there is the per-step dispatch its members
  share; at 16 members of a small net a step is already mostly their arithmetic
  (bench/packing.py), so a bigger pack mostly delays each member's epochs.
- CUDA: as many members as ``CUDA_MEMORY_SHARE`` of the device's free memory holds,
  at :func:`member_bytes` each (the first job's estimate: its pack's members share its
  structure and batch size), at most ``CUDA_PACK_MAX``, at least 1.
"""

from __future__ import annotations

from typing import Any

from fitq.service.settings import Settings
from fitq.service.spec import parse_spec

CPU_PACK_MAX = 16
CUDA_PACK_MAX = 64
"""The largest pack bench/packing.py measures on a GPU."""
CUDA_MEMORY_SHARE = 0.5
"""Of the device's free memory when the pack starts: the rest is left for the
allocator's slack, the validation batches and other processes."""
PARAMETER_COPIES = 6
"""A member's parameter-sized buffers: weights, gradients, the update's work buffer and
up to three optimizer slots (Adam with AMSGrad)."""
ACTIVATION_COPIES = 4
"""A member's buffers per unit of a batch row: each layer's output and pre-activation,
and their gradients."""
VALIDATION_ROWS = 512
"""Rows of each member in one validation forward (the pack's fixed chunk)."""
FLOAT_BYTES = 4


def pack_max(settings: Settings, device: str, spec: dict[str, Any], rows: int) -> int:
    """K for a pack whose first job is ``spec`` with ``rows`` training rows, on ``device``."""
    if settings.pack_max is not None:
        return settings.pack_max
    if not device.startswith("cuda"):
        return CPU_PACK_MAX
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    fits = int(free * CUDA_MEMORY_SHARE) // member_bytes(spec, rows)
    return max(1, min(CUDA_PACK_MAX, fits))


def member_bytes(spec: dict[str, Any], rows: int) -> int:
    """What one member of ``spec`` with ``rows`` data rows holds on the device: its
    parameter-sized buffers, its activations for the larger of a training batch and
    a validation chunk, and its rows (counted as its own, though members naming one
    dataset share them)."""
    model = parse_spec(spec).model
    units = model.input_dim + sum(
        layer["units"] for layer in spec["model"]["layers"] if layer["type"] == "dense"
    )
    batch = spec["fit"]["batch_size"] or rows
    width = max(batch, VALIDATION_ROWS)
    data = rows * (model.input_dim + model.output_units)
    cells = PARAMETER_COPIES * model.parameter_count() + ACTIVATION_COPIES * width * units + data
    return FLOAT_BYTES * cells
