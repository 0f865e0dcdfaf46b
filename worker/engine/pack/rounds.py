"""The training members' buffers (`Seating`) and one round of steps over them (`Round`).

One training step, under torch.no_grad(), for every member at once:

    xb, yb  ← index_select of the plan's rows             [K, B, f], [K, B, t]
    out     ← network.forward(xb)                         batched GEMMs (bmm/baddbmm)
    Σloss_k ← Σ valid·loss rows, into the step's row of `stats` [S, 1 + metrics, K]
    Σmetric ← likewise (before the update, as Keras' History)
    grads   ← network.backward(w·∂loss/∂out)              + each member's regularizers
    params  ← the optimizer's rule over [K, P] with [K, 1] hyperparameters

A step where some member sits out updates only the others (their rows gathered,
updated, put back). On CUDA the steps where every member trains replay a captured
graph of everything after the gather (`compute`, graph.py). The losses are read back
every NONFINITE_CHECK_STEPS steps and at the round's end (one device sync each); a
member with a NaN/Inf loss fails alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from fitq.worker.engine.cuda_graph import Cells
from fitq.worker.engine.errors import TrainingError
from fitq.worker.engine.pack import data, fused
from fitq.worker.engine.pack.graph import Compute, PackGraph
from fitq.worker.engine.pack.member import Member, MemberStatus
from fitq.worker.engine.pack.network import Context, Dropout, Network
from fitq.worker.engine.pack.objectives import Loss, Metric, masked_sum
from fitq.worker.engine.pack.optim import PackedOptimizer, own_slots, slot_init
from fitq.worker.engine.pack.solo import NONFINITE_CHECK_STEPS

StepHook = Callable[[int, int], None]  # (round step, round steps), 1-based


class Seating:
    """Buffers [K, P] holding the training members' weights, gradients and optimizer
    slots (row k = member k, the solo flat layout), the network bound to them, and the
    per-member hyperparameters as [K, 1] columns."""

    def __init__(
        self,
        members: Sequence[Member],
        net: Network,
        like: Tensor,
        fuse: bool | None = None,
        cuda_graph: bool = True,
    ):
        k_, p_ = len(members), net.size
        self.members = list(members)
        self.net = net
        fuse = fused.wanted(like.device, p_, fuse)
        self.opt = PackedOptimizer([m.optimizer for m in members], fuse)
        self.params = like.new_empty(k_, p_)
        self.grads = like.new_zeros(k_, p_)
        self.work = like.new_empty(k_ if self.opt.needs_work else 0, p_)
        self.slots = {s: like.new_empty(k_, p_) for s in self.opt.slots}
        for k, m in enumerate(members):
            self.params[k].copy_(m.flat)
            for s, buf in self.slots.items():
                own = m.slots.get(s)
                if own is not None:
                    buf[k].copy_(own)
                else:  # a slot of other members' rules: its neutral start (optim.py)
                    buf[k].fill_(slot_init(m.optimizer, s))
        for k, m in enumerate(members):
            m.k, m.flat = k, self.params[k]
            m.slots = {s: self.slots[s][k] for s in own_slots(m.optimizer)}
        net.bind(self.params, self.grads)
        net.set_members([m.spec["model"] for m in members], like)
        self.coefs = self.opt.coefficients(like)
        # B: rows per member and step, a multiple of 8 (MKL rounds some GEMMs of odd row
        # counts differently in different packs; padding rows cost nothing in the results)
        self.width = -(-max(m.batch_size for m in members) // 8) * 8
        self.generators = [m.dropout_gen for m in members]
        self._batch: tuple[Tensor, Tensor] | None = None
        self.dropout = any(isinstance(la, Dropout) and la.active for la in net.layers)
        self.cuda_graph = cuda_graph  # capture the step on CUDA (graph.py)
        self.graph: PackGraph | None = None

    def batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The step's input buffers [K·B, f] and [K·B, t], allocated once."""
        if self._batch is None:
            rows = len(self.members) * self.width
            self._batch = (x.new_empty(rows, x.shape[1]), y.new_empty(rows, y.shape[1]))
        return self._batch

    def update(self, s_coefs: dict[str, Tensor], active: Tensor | None) -> None:
        """The optimizer step for every member (active None) or only the `active` rows."""
        if active is None:
            self.opt.update(self.params, self.grads, dict(self.slots), s_coefs, self.work)
            return
        if active.numel() == 0:
            return
        p = self.params.index_select(0, active)
        slots = {s: t.index_select(0, active) for s, t in self.slots.items()}
        c = {n: t.index_select(0, active) for n, t in s_coefs.items()}
        work = self.work[: active.numel()]
        self.opt.update(p, self.grads.index_select(0, active), slots, c, work)
        self.params.index_copy_(0, active, p)
        for s, t in slots.items():
            self.slots[s].index_copy_(0, active, t)


class Round:
    """Every seated member through the rest of its current epoch (its permutation drawn)."""

    def __init__(
        self,
        seating: Seating,
        store: data.Store,
        loss: Loss,
        metrics: Sequence[Metric],
    ):
        self.seating, self.loss, self.metrics = seating, loss, metrics
        members = seating.members
        like = seating.params
        rows = [
            data.Rows(store.offset(m.train_key), m.perm, m.batch_size, m.steps, m.step)  # type: ignore[arg-type]
            for m in members
        ]
        self.plan = data.plan_round(rows, seating.width, like.device, like.dtype)
        n_steps = self.plan.steps
        for m in members:
            m.round_start, m.round_steps, m.round_cut = m.step, m.steps - m.step, None
        ahead = np.arange(1, n_steps + 1)[:, None]  # [S, 1]
        taken = np.minimum(ahead, np.array([[m.round_steps for m in members]]))
        t = np.array([[m.opt_step for m in members]]) + np.maximum(taken, 1)  # [S, K]
        self.step_coefs = seating.opt.step_coefficients(t, like)
        self.stats = like.new_zeros(n_steps, 1 + len(metrics), len(members))
        assert store.x is not None and store.y is not None
        self.x, self.y = store.x, store.y
        self.done = 0  # steps of the round completed
        self._checked = 0
        # each step's views (its plan row, coefficients, sums' cells), made once: at K = 1
        # a step's bookkeeping in Python costs as much as a GEMM (unbind: one call for all)
        plan, cols = self.plan, self.stats.unbind(1)  # [S, K]: loss, then each metric
        self._idx = plan.idx.unbind(0)
        self._rows = list(
            zip(plan.w.unbind(0), plan.valid.unbind(0), plan.counts.unbind(0), strict=True)
        )
        self._cells = list(zip(*(col.unbind(0) for col in cols), strict=True))
        self._coefs: list[dict[str, Tensor]] = [{} for _ in range(n_steps)]
        for name, t in self.step_coefs.items():
            for row, view in zip(self._coefs, t.unbind(0), strict=True):
                row[name] = view
        self._capture = (  # replay a captured step (graph.py): on CUDA, without dropout
            seating.cuda_graph and like.device.type == "cuda" and not seating.dropout
        )
        self._ctx = Context(training=True, generators=seating.generators)
        self._compute = compute(seating, loss, metrics, self._ctx, None)  # every member trains

    def run(self, on_step: StepHook | None) -> None:
        n = self.plan.steps
        for s in range(self.done, n):
            self.step(s)
            self.done = s + 1
            if self.done - self._checked >= NONFINITE_CHECK_STEPS:
                self.check()
            if on_step is not None:
                on_step(self.done, n)
        self.check()

    def step(self, s: int) -> None:
        seating, plan = self.seating, self.plan
        inputs = seating.batch(self.x, self.y)
        idx = self._idx[s]
        torch.index_select(self.x, 0, idx, out=inputs[0])
        torch.index_select(self.y, 0, idx, out=inputs[1])
        cells, step_coefs, plan_row = self._cells[s], self._coefs[s], self._rows[s]
        try:
            if plan.all_active(s):
                graph = self._graph()
                if graph is not None:
                    graph.run(inputs, plan_row, step_coefs, cells)
                    return
                self._ctx.draws = plan.draws[s]
                w, valid, counts = plan_row
                mask = None if plan.full[s] else valid  # no padding rows: nothing to mask
                self._compute(*inputs, w, mask, counts, step_coefs, cells)
                return
            active = plan.active_index(s, inputs[0].device)
            ctx = Context(training=True, draws=plan.draws[s], generators=seating.generators)
            compute(seating, self.loss, self.metrics, ctx, active)(
                *inputs, *plan_row, step_coefs, cells
            )
        except (RuntimeError, torch.OutOfMemoryError) as e:
            raise TrainingError(f"a pack step failed at round step {s + 1}: {e}") from e

    def _graph(self) -> PackGraph | None:
        """The seating's captured step, on CUDA without an active dropout (None: eager)."""
        seating = self.seating
        if not self._capture:
            return None
        if seating.graph is None:
            ctx = Context(training=True, draws=[seating.width] * len(seating.members))
            seating.graph = PackGraph(
                compute(seating, self.loss, self.metrics, ctx, None),
                seating.batch(self.x, self.y),
                (self.plan.w[0], self.plan.valid[0], self.plan.counts[0]),
                {n: t[0] for n, t in self.step_coefs.items()},
                self.stats.shape[1],
            )
        return seating.graph

    def check(self) -> None:
        """Fail every member whose loss went NaN/Inf in the steps not yet checked."""
        lo, hi = self._checked, self.done
        self._checked = hi
        if hi <= lo:
            return
        finite = torch.isfinite(self.stats[lo:hi, 0]).cpu().numpy()  # [n, K]
        bad = ~finite & self.plan.active[lo:hi]
        for k in np.flatnonzero(bad.any(axis=0)):
            m = self.seating.members[k]
            if m.status is not MemberStatus.TRAINING:
                continue
            s = lo + int(np.flatnonzero(bad[:, k])[0])
            m.fail(m.round_start + s + 1, float(self.stats[s, 0, k]))
            m.round_cut = hi
            self.plan.deactivate(int(k), hi)

    def taken(self, m: Member) -> int:
        """Steps member m has taken in this round so far."""
        return m.steps_in_round(self.done)

    def member_stats(self, m: Member) -> Tensor:
        """m's per-step sums of its epoch so far [steps, 1 + metrics]."""
        assert m.epoch_stats is not None
        out = m.epoch_stats.clone()
        d = self.taken(m)
        out[m.round_start : m.round_start + d] = self.stats[:d, :, m.k]
        return out


def compute(
    seating: Seating,
    loss: Loss,
    metrics: Sequence[Metric],
    ctx: Context,
    active: Tensor | None,
) -> Compute:
    """One training step of the seating after its batch is gathered (the part a CUDA
    graph captures): forward, the sums into `cells`, backward, the update of every
    member (active None) or of the `active` rows. `valid` None: the step has no padding
    rows, so the sums need no mask (the same bits, one op fewer)."""
    net = seating.net
    k_, b_ = len(seating.members), seating.width

    def step(
        xb2: Tensor,
        yb2: Tensor,
        w: Tensor,
        valid: Tensor | None,
        counts: Tensor,
        step_coefs: dict[str, Tensor],
        cells: Cells,
    ) -> None:
        xb, yb = xb2.view(k_, b_, -1), yb2.view(k_, b_, -1)
        out = net.forward(xb, ctx)
        rows, dout = loss.rows_and_grad(out, yb, w)
        masked_sum(rows, valid, cells[0])
        for metric, cell in zip(metrics, cells[1:], strict=True):
            masked_sum(metric.rows(out, yb), valid, cell)
        if net.regularized:
            penalty = net.penalty()
            assert penalty is not None
            cells[0].addcmul_(penalty, counts)  # the batch's loss + its penalty
        net.backward(dout)
        seating.update({**seating.coefs, **step_coefs}, active)

    return step
