"""A pack on a CUDA device agrees with the same pack on the CPU and with each member's
solo CUDA run; its captured step (a CUDA graph per seating) equals its eager step; its
checkpoints resume in a new pack. Skipped where CUDA is absent
(bit-for-bit results are promised on the CPU only; here the tolerances are explicit).
A checkpoint resumes on the device kind it was written on (its dropout generator's
state is that device's), as a solo run's does."""

from __future__ import annotations

import pytest

from fitq.worker.engine import Trainer
from fitq.worker.engine.pack import Pack
from tests.engine.helpers import cuda, dense, requires_cuda, spec
from tests.engine.pack_helpers import ROWS, assert_close_weights, data

pytestmark = [cuda, requires_cuda]

RTOL = 1e-4  # float32 on a GPU: cuBLAS may pick other kernels per shape

LAYERS = [dense(32, "relu"), {"type": "dropout", "rate": 0.2}, dense(3, "softmax")]
NO_DROPOUT = [dense(32, "relu"), dense(3, "softmax")]


def _specs(layers):
    return [
        spec(
            layers=layers,
            seed=i,
            optimizer={"name": "adam", "learning_rate": lr},
            validation_split=0.2,
        )
        for i, lr in enumerate((0.01, 0.003, 0.03))
    ]


def _run(device: str, specs) -> Pack:
    pack = Pack(device)
    for i, s in enumerate(specs):
        pack.add(f"m{i}", s, *data(ROWS[i], i))
    while any(not r.done for r in pack.run_epoch().values()):
        pass
    return pack


def test_a_cuda_pack_agrees_with_the_cpu_pack_and_the_solo_cuda_runs():
    specs = _specs(NO_DROPOUT)
    on_gpu, on_cpu = _run("cuda", specs), _run("cpu", specs)
    for i, s in enumerate(specs):
        ours = {k: t.cpu() for k, t in on_gpu.weights(f"m{i}").items()}
        assert_close_weights(ours, on_cpu.weights(f"m{i}"), RTOL)
        solo = Trainer(**s, device="cuda")
        solo.fit(*data(ROWS[i], i))
        theirs = {k: t.cpu() for k, t in solo.model.named_tensors().items()}
        assert_close_weights(ours, theirs, RTOL)


def test_dropout_masks_are_each_members_own_on_cuda():
    specs = _specs(LAYERS)
    pack = _run("cuda", specs)
    for i, s in enumerate(specs):
        solo = Trainer(**s, device="cuda", cuda_graph=False)
        solo.fit(*data(ROWS[i], i))
        theirs = {k: t.cpu() for k, t in solo.model.named_tensors().items()}
        ours = {k: t.cpu() for k, t in pack.weights(f"m{i}").items()}
        assert_close_weights(ours, theirs, RTOL)


def test_a_checkpoint_resumes_in_a_new_cuda_pack():
    specs = _specs(LAYERS)
    reference, first = Pack("cuda"), Pack("cuda")
    for pack in (reference, first):
        for i, s in enumerate(specs):
            pack.add(f"m{i}", s, *data(ROWS[i], i))
    first.run_epoch()
    again = Pack("cuda")
    for i, s in enumerate(specs):
        again.add(f"m{i}", s, *data(ROWS[i], i), checkpoint=first.checkpoint(f"m{i}"))
    for pack in (reference, again):
        while any(not r.done for r in pack.run_epoch().values()):
            pass
    for i in range(len(specs)):
        ours = {k: t.cpu() for k, t in again.weights(f"m{i}").items()}
        theirs = {k: t.cpu() for k, t in reference.weights(f"m{i}").items()}
        assert_close_weights(ours, theirs, RTOL)


def test_the_captured_step_equals_the_eager_step():
    specs = _specs(NO_DROPOUT)
    graphs = []

    def run(cuda_graph: bool) -> Pack:
        pack = Pack("cuda", cuda_graph=cuda_graph)
        for i, s in enumerate(specs):
            pack.add(f"m{i}", s, *data(ROWS[i], i))

        def seen(step: int, steps: int) -> None:
            assert pack._seating is not None
            graphs.append(pack._seating.graph)

        while any(not r.done for r in pack.run_epoch(seen).values()):
            pass
        return pack

    eager = run(cuda_graph=False)
    assert not any(graphs), "the eager pack captured a graph"
    captured = run(cuda_graph=True)
    replayed = {id(g): g.replays for g in graphs if g is not None}
    assert replayed and sum(replayed.values()) > 0, "no step replayed a graph"
    for i in range(len(specs)):
        ours = {k: t.cpu() for k, t in captured.weights(f"m{i}").items()}
        theirs = {k: t.cpu() for k, t in eager.weights(f"m{i}").items()}
        assert_close_weights(ours, theirs, 1e-5)
        assert captured.history(f"m{i}")["loss"] == pytest.approx(
            eager.history(f"m{i}")["loss"], rel=1e-5
        )
