"""The pack's data: every member's rows resident on the device, and each round's batches.

`Store` keeps one tensor of rows x [R, f] (and targets y [R, t]) on the device, the
members' datasets one after another; a member reads its rows by offset. Members that
name the same dataset (and normalize it the same way) share its rows: nothing is copied
per member. Entries come and go at epoch boundaries (a new tensor is built then; a lone
entry is used as it is).

`plan_round` turns each member's permutation into the round's batches: for round step s,
`idx[s]` [K·B] are the global rows of every member's batch (a member's batch in its row
of B; padding repeats the batch's first row), `valid[s]` [K, B] marks real rows and
`w[s]` = valid / (the member's rows in that step), the factor that makes a row's loss
gradient the solo run's ∂(mean loss)/∂out. A member whose epoch has fewer steps left
is inactive (all-zero rows, no update) for the rest of the round.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


class Store:
    """Rows of x [R, f] in the pack's dtype and y [R, t], resident on the device."""

    def __init__(self, device: torch.device, dtype: torch.dtype):
        self.device, self.dtype = device, dtype
        self._entries: dict[Hashable, tuple[Tensor, Tensor]] = {}  # key → (x, y) on the device
        self._offsets: dict[Hashable, int] = {}
        self.x: Tensor | None = None
        self.y: Tensor | None = None

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    @property
    def rows(self) -> int:
        """Rows held, over all entries."""
        return sum(x.shape[0] for x, _ in self._entries.values())

    def put(self, key: Hashable, x: Tensor, y: Tensor) -> None:
        """Hold rows x [n, f] (float32, CPU) and targets y [n, t] under `key`, once."""
        if key in self._entries:
            return
        ty = y.to(self.device) if y.dtype == torch.int64 else y.to(self.device, self.dtype)
        self._entries[key] = (x.to(self.device, self.dtype), ty)
        self.x = None  # rebuilt by `offset` when next needed

    def keep(self, keys: set[Hashable]) -> None:
        """Forget every entry not in `keys`."""
        gone = [k for k in self._entries if k not in keys]
        for k in gone:
            del self._entries[k]
        if gone:
            self.x = None

    def offset(self, key: Hashable) -> int:
        """Where `key`'s rows start in x and y."""
        if self.x is None:
            self._build()
        return self._offsets[key]

    def _build(self) -> None:
        xs, ys, at = [], [], 0
        self._offsets = {}
        for key, (x, y) in self._entries.items():
            self._offsets[key] = at
            xs.append(x)
            ys.append(y)
            at += x.shape[0]
        # one entry (a pack of one, no validation set) is used as it is: no copy
        self.x, self.y = (xs[0], ys[0]) if len(xs) == 1 else (torch.cat(xs), torch.cat(ys))


@dataclass
class Rows:
    """One member's part of a round: its training rows and where its epoch stands."""

    offset: int  # of its training rows in the store
    perm: Tensor  # this epoch's order of its n training rows (CPU int64)
    batch_size: int  # rows per step (the last step may have fewer)
    steps: int  # steps in its epoch
    start: int  # steps of the epoch already done


@dataclass
class Plan:
    """A round's batches, all members at once (see the module docstring)."""

    steps: int  # S, the round's length
    idx: Tensor  # [S, K·B] int64, device
    valid: Tensor  # [S, K, B] 0/1 in the pack's dtype, device
    w: Tensor  # [S, K, B] valid / rows, device
    counts: Tensor  # [S, K] rows per member and step, device
    active: np.ndarray  # [S, K] bool: the member trains in that step
    draws: list[list[int | None]]  # [S][K] rows trained (None: inactive), for dropout
    every: list[bool]  # [S] every member trains in that step
    full: list[bool]  # [S] every member trains on all B rows: no padding to mask out

    def all_active(self, s: int) -> bool:
        return self.every[s]  # a list, not active[s].all(): numpy costs µs a step

    def active_index(self, s: int, device: torch.device) -> Tensor:
        return torch.from_numpy(np.flatnonzero(self.active[s])).to(device)

    def deactivate(self, k: int, start: int) -> None:
        """Member k takes no step from round step `start` on (it failed or left)."""
        if start >= self.steps:
            return
        self.valid[start:, k] = 0
        self.w[start:, k] = 0
        self.counts[start:, k] = 0
        self.active[start:, k] = False
        for s in range(start, self.steps):
            self.draws[s][k] = None
            self.every[s] = self.full[s] = False


def plan_round(members: Sequence[Rows], width: int, device: torch.device, dtype: torch.dtype):
    """The batches of one round: each member runs the rest of its epoch."""
    n_steps = max(m.steps - m.start for m in members)
    cols = torch.arange(width)
    idx, valid = [], []
    for m in members:
        n = m.perm.shape[0]
        j = torch.arange(n_steps) + m.start  # the member's step in its epoch
        pos = j.unsqueeze(1) * m.batch_size + cols  # [S, B] positions in its permutation
        ok = (cols < m.batch_size) & (pos < n) & (j < m.steps).unsqueeze(1)
        rows = m.perm[pos.clamp(max=n - 1)] + m.offset
        idx.append(torch.where(ok, rows, rows[:, :1]))
        valid.append(ok)
    idx_t = torch.stack(idx, dim=1)  # [S, K, B]
    valid_t = torch.stack(valid, dim=1)
    counts = valid_t.sum(dim=2)  # [S, K]
    w = valid_t.double() / counts.clamp(min=1).unsqueeze(2).double()
    active = (counts > 0).numpy()
    draws = [[int(c) if c else None for c in row] for row in counts.tolist()]
    return Plan(
        steps=n_steps,
        idx=idx_t.view(n_steps, -1).to(device),
        valid=valid_t.to(device, dtype),
        w=w.to(device, dtype),
        counts=counts.to(device, dtype),
        active=active,
        draws=draws,
        every=(counts > 0).all(dim=1).tolist(),
        full=(counts == width).all(dim=1).tolist(),
    )


def validation_batches(
    members: Sequence[tuple[int, int]], chunk: int, device: torch.device, dtype: torch.dtype
):
    """Batches over every member's validation rows at once: members [(offset, rows)]
    (rows 0: none) → yields (idx [K·chunk], valid [K, chunk]) until all are covered."""
    longest = max(r for _, r in members)
    cols = torch.arange(chunk)
    for lo in range(0, longest, chunk):
        pos = lo + cols
        idx = torch.stack([off + pos.clamp(max=max(r - 1, 0)) for off, r in members])
        ok = torch.stack([pos < r for _, r in members])
        yield idx.view(-1).to(device), ok.to(device, dtype)
