"""Every optimizer, a schedule, gradient clipping and ReduceLROnPlateau on a CUDA device:
the captured graph (which reads each step's learning rate and bias corrections from
device scalars filled before the replay) agrees with eager steps and with the CPU, and
a run resumed mid-epoch agrees with the uninterrupted one. Skipped where CUDA is absent
(bit-for-bit results are promised on the CPU only; here the tolerances are explicit)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from fitq.worker.engine import Trainer, optimizers
from tests.engine.helpers import blobs, cuda, dense, requires_cuda, spec, weights, without_timing

pytestmark = [cuda, requires_cuda]

RTOL, ATOL = 1e-4, 1e-5  # float32 on a GPU: cuBLAS may pick other kernels per stream

LAYERS = [dense(32, "relu"), dense(16, "tanh"), dense(3, "softmax")]
COSINE = {"schedule": "cosine_decay", "initial_learning_rate": 0.02, "decay_steps": 20,
          "alpha": 0.1, "warmup_target": 0.05, "warmup_steps": 5}  # fmt: skip
CASES: dict[str, tuple[Any, dict[str, Any]]] = {
    **{name: ({"name": name, "learning_rate": 0.01}, {}) for name in optimizers.CONFIGS},
    "adam_cosine_clipnorm": ({"name": "adam", "learning_rate": COSINE, "clipnorm": 0.5}, {}),
    "ftrl_cosine_global_clip": (
        {"name": "ftrl", "learning_rate": COSINE, "global_clipnorm": 0.5}, {}
    ),
    "nadam_plateau": (
        {"name": "nadam", "learning_rate": 0.01, "clipvalue": 0.05},
        {"reduce_lr_on_plateau": {"monitor": "loss", "mode": "max", "patience": 0}},
    ),
}  # fmt: skip


def _spec(case: str) -> dict[str, Any]:
    optimizer, fit = CASES[case]
    return spec(LAYERS, optimizer=optimizer, epochs=3, batch_size=16, validation_split=0.2, **fit)


def _assert_close_runs(a: Trainer, b: Trainer) -> None:
    wa, wb = weights(a), weights(b)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=RTOL, atol=ATOL, msg=k)
    ha, hb = without_timing(a.history), without_timing(b.history)
    assert ha.keys() == hb.keys()
    for k in ha:
        np.testing.assert_allclose(ha[k], hb[k], rtol=RTOL, atol=ATOL, err_msg=k)


class TestCudaGraph:
    @pytest.mark.parametrize("case", sorted(CASES))
    def test_graph_agrees_with_eager_steps_and_the_cpu(self, case):
        x, y = blobs(n=150)
        graphed = Trainer(**_spec(case), device="cuda")
        eager = Trainer(**_spec(case), device="cuda", cuda_graph=False)
        cpu = Trainer(**_spec(case), device="cpu")
        for t in (graphed, eager, cpu):
            t.fit(x, y)
        assert graphed._graph is not None and graphed._graph.graph is not None
        assert graphed.optimizer.state.step == cpu.optimizer.state.step
        _assert_close_runs(graphed, eager)
        _assert_close_runs(graphed, cpu)

    @pytest.mark.parametrize("case", ["adam_cosine_clipnorm", "nadam_plateau"])
    def test_resume_mid_epoch_agrees_with_the_uninterrupted_run(self, case):
        x, y = blobs(n=150)
        full = Trainer(**_spec(case), device="cuda")
        saved: dict[str, bytes] = {}

        def on_step_end(epoch: int, step: int, steps: int) -> None:
            if (epoch, step) == (2, 4):
                saved["at"] = full.checkpoint()

        full.fit(x, y, on_step_end=on_step_end)
        resumed = Trainer(**_spec(case), device="cuda")
        resumed.fit(x, y, resume_from=saved["at"])
        _assert_close_runs(full, resumed)
