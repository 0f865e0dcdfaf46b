"""Packed training: K compatible jobs trained as one computation on one device.

Members of a pack share a structure (`compatibility_key`) and differ in everything
else: seed, every optimizer hyperparameter, dataset and its size, epochs, validation,
early stopping, normalization. Each computes its solo run's math (same initial
weights, data order, update rule, dropout masks, History), with weights [K, in, out]
and batched GEMMs, all members' parameters in one flat buffer [K, P] and every
hyperparameter a [K, 1] column. No autograd: `torch.no_grad()` throughout.

    from fitq.worker.engine.pack import Pack, compatibility_key

    pack = Pack(device="cuda", dtype=torch.float32,
                fused_update=None, cuda_graph=True)      # keyword-only; see below
    pack.add("job-1", spec, x, y, validation=None,       # the solo trainer's data
             checkpoint=None,                            # a solo-format checkpoint to resume
             dataset_key="ds-7")                         # members naming it share its rows
    results = pack.run_epoch(on_step=None)               # (step, steps) of the round, 1-based
    for member_id, r in results.items():                 # EpochResult
        r.epoch, r.logs, r.status, r.error               # status: MemberStatus
        if r.done:                                       # finished, early_stopped, failed
            ...pack.checkpoint(member_id), pack.export(member_id, {...})
            pack.remove(member_id)
    pack.members, pack.status(id), pack.history(id), pack.progress(id)
    pack.evaluate(id, x, y), pack.predictor(id)          # through the solo path

- A round (`run_epoch`) takes each training member through (the rest of) its epoch; a
  member with fewer steps sits out the round's last steps. Members join and leave
  between rounds; `remove` inside `on_step` stops a member at once, the others go on.
- A NaN/Inf loss fails that member alone (its EpochResult carries a TrainingError with
  epoch and step, the solo message); a failing step (e.g. out of memory) raises
  TrainingError for the pack.
- `checkpoint(id)` is the solo trainer's format at the member's step (mid-epoch from
  `on_step` too): it resumes solo, or in any pack (`add(..., checkpoint=…)`); resumed
  into a pack of the same members it continues bit for bit on the CPU.
- `export(id)` is the solo safetensors layout (`layers.{i}.kernel` [in, out], …).

On the CPU a member's results do not depend on which other members share its pack, nor
on its row: every tensor of a member's row starts 64-byte aligned and the batch width is
a multiple of 8, the conditions under which MKL's batched GEMMs were seen to round each
matrix the same way whatever the batch (tests/engine/test_pack_membership.py checks it).
The one exception: with `batch_size: null` the width is the largest member's training
set, so a member's last bits may change when the largest one leaves.

On CUDA a step where every member trains is replayed from a CUDA graph captured per
seating (K, B), as the solo trainer's (graph.py); steps where some member sits out, and
packs with an active dropout, run eagerly (`Pack(..., cuda_graph=False)`: always). On
the CPU the optimizer's rule is compiled into one pass over the [K, P] buffers where
that pays and a C++ compiler is at hand (fused.py; `fused_update=False`: never).

Not packed (the key is None, the job trains solo): `batch_normalization` (its batch
statistics would see a short batch's padding) and whatever else the pack does not
implement; compat.py lists what it does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fitq.worker.engine.pack.compat import compatibility_key
    from fitq.worker.engine.pack.member import EpochResult, MemberStatus
    from fitq.worker.engine.pack.pack import Pack

_HOMES = {
    "compatibility_key": "compat",
    "EpochResult": "member",
    "MemberStatus": "member",
    "Pack": "pack",
}
"""Where each public name lives, imported on first use (PEP 562): `compat` is pure
stdlib, and the API imports it to key a job at submit without importing torch."""

__all__ = ["EpochResult", "MemberStatus", "Pack", "compatibility_key"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
