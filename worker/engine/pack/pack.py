"""The Pack: members of one compatibility key trained together on one device.

`run_epoch` is a round: every training member runs the rest of its current epoch (see
rounds.py for the step), then each gets its epoch's end as its solo run would: History
row (training sums, validation), early stopping, and its status. Members join (`add`)
and leave (`remove`) between rounds; `remove` from inside `on_step` takes a member out
at once. A member's outputs (checkpoint, export, evaluate, predictor) are its solo
run's, in the solo formats.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

from fitq.worker.engine.errors import ConfigError, TrainingError
from fitq.worker.engine.model import Predictor, check_features, load_predictor
from fitq.worker.engine.pack import checkpoints, data, joining, solo
from fitq.worker.engine.pack.compat import compatibility_key
from fitq.worker.engine.pack.member import EpochResult, Member, MemberStatus
from fitq.worker.engine.pack.network import Context, Network
from fitq.worker.engine.pack.objectives import Loss, Metric, masked_sum
from fitq.worker.engine.pack.rounds import Round, Seating, StepHook

# rows of each member in one validation forward: a fixed shape, so that a member's
# results do not depend on how many members share its pack
VALIDATION_ROWS = 512


class Pack:
    """Members of one structure on one device, trained as one computation."""

    def __init__(
        self,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        *,
        fused_update: bool | None = None,
        cuda_graph: bool = True,
    ):
        """`fused_update`: the optimizer's rule compiled into one pass over memory on
        the CPU (None: where it pays and a C++ compiler is at hand, fused.py; False:
        the eager rule). `cuda_graph`: replay a captured step on CUDA (graph.py)."""
        self.device, self.dtype = torch.device(device), dtype
        self.fused_update, self.cuda_graph = fused_update, cuda_graph
        self.key: str | None = None  # the members' compatibility key
        self._members: dict[str, Member] = {}
        self._seating: Seating | None = None
        self._round: Round | None = None
        self._dirty = False  # membership changed: seat the training members anew
        self._store = data.Store(self.device, dtype)
        self._like = torch.empty(0, dtype=dtype, device=self.device)

    # ------------------------------------------------------------------ membership

    @property
    def members(self) -> tuple[str, ...]:
        """Every member's id, training or done (until removed), in the order added."""
        return tuple(self._members)

    @property
    def resident_rows(self) -> int:
        """Data rows the pack holds on its device (members naming one dataset share them)."""
        return self._store.rows

    def status(self, member_id: str) -> MemberStatus:
        return self._member(member_id).status

    def history(self, member_id: str) -> dict[str, list[float]]:
        """The member's History so far (Keras names, as the solo trainer's `history`)."""
        return {k: list(v) for k, v in self._member(member_id).history.items()}

    def progress(self, member_id: str) -> tuple[int, int, int]:
        """(epochs completed, steps done in its current epoch, steps per epoch)."""
        m = self._member(member_id)
        return m.epoch, self._live_step(m), m.steps

    @torch.no_grad()
    def add(
        self,
        member_id: str,
        spec: Mapping[str, Any],
        x: Any,
        y: Any,
        validation: tuple[Any, Any] | None = None,
        *,
        checkpoint: bytes | None = None,
        dataset_key: Hashable | None = None,
        validation_key: Hashable | None = None,
    ) -> MemberStatus:
        """Add a member (between rounds). `spec` is a normalized job spec; x, y and
        `validation` its data as the solo trainer takes them; `checkpoint` a solo-format
        checkpoint of the same spec and data to resume from. Members that pass the same
        `dataset_key` (`validation_key`) share those rows on the device, so the key must
        name the same arrays. Returns the member's status (a checkpoint may hold a run
        that has ended: export it and remove it)."""
        if self._round is not None:
            raise ConfigError("members join between rounds, not during one")
        if member_id in self._members:
            raise ConfigError(f"member {member_id!r} is already in the pack")
        key = compatibility_key(spec)
        if key is None:
            raise ConfigError("this spec does not train in a pack (batch_normalization)")
        if not self._members:  # an empty pack takes the structure of its next member
            self._setup(spec)
        elif key != self.key:
            raise ConfigError(f"member {member_id!r} is not compatible with the pack")
        m = joining.new_member(
            member_id,
            spec,
            (x, y, validation),
            (dataset_key, validation_key),
            self._host.loss.name,
            self.net,
            self._store,
            self._like,
            len(self.metrics),
        )
        if checkpoint is not None:
            checkpoints.read(m, self.net, checkpoint)
        if m.done:
            self._finish(m)
        self._members[member_id] = m
        self.key = key
        self._dirty = True
        return m.status

    def remove(self, member_id: str) -> None:
        """Take a member out, between rounds or during one (from `on_step`: it takes no
        further step). Its state goes with it: checkpoint or export it first."""
        m = self._member(member_id)
        del self._members[member_id]
        if self._round is not None and m in self._round.seating.members:
            m.round_cut = self._round.done
            self._round.plan.deactivate(m.k, self._round.done)
        self._dirty = True

    def stop(self, member_id: str) -> MemberStatus:
        """End a training member's fit at its epoch boundary, as the solo trainer's fit
        ends when `stop_training` is set between epochs (a sweep pruning a trial): it
        becomes EARLY_STOPPED, early stopping's best weights restored if it keeps them."""
        m = self._member(member_id)
        if m.perm is not None or (self._round is not None and m in self._round.seating.members):
            raise ConfigError(f"member {member_id!r} stops between its epochs, not inside one")
        if m.status is MemberStatus.TRAINING:
            m.stop_training = True
            self._finish(m)
        return m.status

    # ------------------------------------------------------------------ training

    @torch.no_grad()
    def run_epoch(self, on_step: StepHook | None = None) -> dict[str, EpochResult]:
        """One round: each training member runs (the rest of) its current epoch. Returns
        the result of every member whose epoch ended or who failed in it. `on_step(step,
        steps)` runs after each step of the round; an exception it raises propagates at
        once and leaves every member consistent: `checkpoint` then resumes after that
        step, and the next `run_epoch` goes on from there."""
        for m in self._members.values():  # a NaN/Inf in steps no round has checked yet
            if m.status is MemberStatus.TRAINING and m.perm is not None:
                m.check_epoch()
        failed = [m for m in self._members.values() if m.status is MemberStatus.FAILED]
        self._dirty = self._dirty or bool(failed)
        self._seat()
        seating = self._seating
        if seating is None:
            return self._end_epochs(failed)
        for m in seating.members:
            if m.perm is None:  # its epoch begins (the solo trainer's order of draws)
                m.perm = (
                    torch.randperm(m.n_train, generator=m.shuffle_gen)
                    if m.fit.shuffle
                    else torch.arange(m.n_train)
                )
                m.epoch_stats = self._like.new_zeros(m.steps, 1 + len(self.metrics))
                m.epoch_seconds = m.train_seconds = 0.0
        if any(m.step < m.steps for m in seating.members):
            self._round = Round(seating, self._store, self.loss, self.metrics)
            started = time.perf_counter()
            try:
                self._round.run(on_step)
            finally:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                self._settle(self._round, time.perf_counter() - started)
        return self._end_epochs([m for m in failed if m not in seating.members] + seating.members)

    def _settle(self, rnd: Round, seconds: float) -> None:
        """Move the round's progress into its members (also after an interrupted round)."""
        for m in rnd.seating.members:
            if m.status is MemberStatus.FAILED:
                self._dirty = True
                continue
            m.epoch_stats = rnd.member_stats(m)
            taken = rnd.taken(m)
            m.step += taken
            m.opt_step += taken
            m.epoch_seconds += seconds
            m.train_seconds += seconds
            m.check_epoch()  # the steps since the round's last check
            if m.status is MemberStatus.FAILED:
                self._dirty = True
        self._round = None

    def _end_epochs(self, members: list[Member]) -> dict[str, EpochResult]:
        present = [m for m in members if self._members.get(m.id) is m]
        results: dict[str, EpochResult] = {}
        for m in present:
            if m.status is MemberStatus.FAILED and m.error is not None and not m.reported:
                m.reported = True  # once, in the first result after it failed
                self._dirty = True
                results[m.id] = EpochResult(m.epoch + 1, {}, m.status, m.error)
        ended = [m for m in present if m.status is MemberStatus.TRAINING and m.step == m.steps]
        started = time.perf_counter()
        validation = self._validate([m for m in ended if m.val_key is not None])
        seconds = time.perf_counter() - started
        for m in ended:
            assert m.epoch_stats is not None
            sums = m.epoch_stats.to("cpu", torch.float64).sum(dim=0).tolist()
            logs = {"loss": sums[0] / m.n_train}
            for metric, total in zip(self.metrics, sums[1:], strict=True):
                logs[metric.name] = total / m.n_train
            logs.update(validation.get(m.id, {}))
            logs["seconds"] = m.epoch_seconds + seconds
            logs["samples_per_second"] = m.n_train / m.train_seconds if m.train_seconds else 0.0
            for k, v in logs.items():
                m.history.setdefault(k, []).append(v)
            epoch = m.epoch + 1
            es = m.early_stopping
            if es is not None and es.update(epoch, logs, self.net.named(m.flat)):
                m.stop_training = True
            m.epoch, m.step, m.perm = epoch, 0, None
            m.epoch_seconds = m.train_seconds = 0.0
            if m.done:
                self._finish(m)
            results[m.id] = EpochResult(epoch, dict(logs), m.status)
        return results

    def _finish(self, m: Member) -> None:
        """The end of a member's fit, as the solo trainer ends it."""
        m.status = MemberStatus.EARLY_STOPPED if m.stop_training else MemberStatus.FINISHED
        es = m.early_stopping
        if es is not None and es.restore_best_weights and es.best_weights is not None:
            for name, t in self.net.named(m.flat).items():
                t.copy_(es.best_weights[name])
        self._dirty = True

    def _validate(self, members: list[Member]) -> dict[str, dict[str, float]]:
        """val_loss and val_<metric> of each member on its validation rows, in batches
        over all seated members at once (those not validating ride along masked)."""
        if not members or self._seating is None:
            return {}
        seating = self._seating
        wanted = {m.id for m in members}
        spans = [
            (self._store.offset(m.val_key) + m.val_start, m.val_rows)  # type: ignore[arg-type]
            if m.id in wanted
            else (0, 0)
            for m in seating.members
        ]
        k_ = len(spans)
        sums = self._like.new_zeros(1 + len(self.metrics), k_)
        cells = self._like.new_zeros(1 + len(self.metrics), k_)
        chunk = VALIDATION_ROWS
        x, y = self._store.x, self._store.y
        assert x is not None and y is not None
        ctx = Context(training=False)
        for idx, valid in data.validation_batches(spans, chunk, self.device, self.dtype):
            xb = x.index_select(0, idx).view(k_, -1, x.shape[1])
            yb = y.index_select(0, idx).view(k_, -1, y.shape[1])
            out = self.net.forward(xb, ctx)
            masked_sum(self.loss.rows(out, yb), valid, cells[0])
            for metric, cell in zip(self.metrics, cells[1:], strict=True):
                masked_sum(metric.rows(out, yb), valid, cell)
            sums.add_(cells)
        penalty = self.net.penalty()
        totals = sums.to("cpu", torch.float64).tolist()
        pen = penalty.tolist() if penalty is not None else [0.0] * k_
        logs: dict[str, dict[str, float]] = {}
        for k, m in enumerate(seating.members):
            if m.id in wanted:
                logs[m.id] = {"val_loss": totals[0][k] / m.val_rows + pen[k]}
                for j, metric in enumerate(self.metrics, start=1):
                    logs[m.id][f"val_{metric.name}"] = totals[j][k] / m.val_rows
        return logs

    # ------------------------------------------------------------------ a member's outputs

    def checkpoint(self, member_id: str) -> bytes:
        """The member's checkpoint in the solo format, at its current step (call it
        between steps: from `on_step`, after `run_epoch` returned or raised)."""
        m = self._member(member_id)
        if m.status is MemberStatus.FAILED:
            raise TrainingError(f"member {member_id!r} failed: it has no checkpoint")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if self._round is not None and m in self._round.seating.members:
            stats = self._round.member_stats(m)
            taken = self._round.taken(m)
            return checkpoints.write(m, self.net, m.step + taken, m.opt_step + taken, stats)
        if m.epoch_stats is None:
            m.epoch_stats = self._like.new_zeros(m.steps, 1 + len(self.metrics))
        return checkpoints.write(m, self.net, m.step, m.opt_step, m.epoch_stats)

    def weights(self, member_id: str) -> dict[str, Tensor]:
        """Copies of the member's weights by exported name, in the pack's dtype."""
        return {k: t.clone() for k, t in self.net.named(self._member(member_id).flat).items()}

    def export(self, member_id: str, metadata: Mapping[str, str] | None = None) -> bytes:
        """The member's model as the solo `Trainer.export_safetensors` writes it."""
        m = self._member(member_id)
        tensors = {
            k: t.detach().to("cpu", torch.float32, copy=True)
            for k, t in self.net.named(m.flat).items()
        }
        if m.norm is not None:
            tensors["normalization.mean"], tensors["normalization.std"] = m.norm
        return safetensors.torch.save(tensors, metadata=dict(metadata or {}))

    def evaluate(self, member_id: str, x: Any, y: Any) -> dict[str, float]:
        """Keras' `evaluate` with the member's current weights, by the solo trainer."""
        m = self._member(member_id)
        fit = {**m.spec["fit"], "normalize": False}  # x is normalized here, as in the run
        trainer = solo.Trainer(
            m.spec["model"], m.spec["compile"], fit, m.seed, self.device, cuda_graph=False
        )
        with torch.no_grad():
            trainer.model.load_named_tensors(self.net.named(m.flat))
        xa = check_features(x, self.net.input_dim)
        if m.norm is not None:
            xa = (xa - m.norm[0].numpy()) / m.norm[1].numpy()
        return trainer.evaluate(xa, y)

    def predictor(self, member_id: str) -> Predictor:
        """The member's model for inference (the solo `Predictor` of its export)."""
        m = self._member(member_id)
        return load_predictor(m.spec["model"], self.export(member_id), self.device)

    # ------------------------------------------------------------------ internals

    def _member(self, member_id: str) -> Member:
        m = self._members.get(member_id)
        if m is None:
            raise KeyError(f"no member {member_id!r} in the pack")
        return m

    def _live_step(self, m: Member) -> int:
        if self._round is not None and m in self._round.seating.members:
            return m.step + self._round.taken(m)
        return m.step

    def _setup(self, spec: Mapping[str, Any]) -> None:
        """The structure every member shares, taken from the first one's solo run."""
        self._host = solo.host(spec)
        self.net = Network.from_model(spec["model"])
        fused = self._host.model.fused_activation
        if fused is not None:
            self.net.fused_last()
        self.loss = Loss(self._host.loss)
        self.metrics = [Metric(mt, self._host.loss.from_logits, fused) for mt in self._host.metrics]

    def _seat(self) -> None:
        """After membership changed: the training members into fresh buffers; the others
        keep copies of their rows (their exports and checkpoints read them)."""
        if not self._dirty:
            return
        training = [m for m in self._members.values() if m.status is MemberStatus.TRAINING]
        for m in self._members.values():
            if m.status is not MemberStatus.TRAINING and m.flat._base is not None:
                m.flat = m.flat.clone()
                m.slots = {s: t.clone() for s, t in m.slots.items()}
        self._seating = (
            Seating(training, self.net, self._like, self.fused_update, self.cuda_graph)
            if training
            else None
        )
        keys = {key for m in training for key in (m.train_key, m.val_key) if key is not None}
        self._store.keep(keys)
        self._dirty = False
