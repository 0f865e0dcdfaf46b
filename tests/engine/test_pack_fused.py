"""The fused packed update (pack/fused.py: each rule compiled into one pass) computes
what the eager rule computes: every rule, its members mixing their switches, equal to
the eager update to float64 round-off (so a fused pack keeps the eager pack's 1e-9 to
the solo runs, test_pack.py), and a member's bits do not depend on its packmates or
its row. Skipped where inductor cannot build CPU kernels (no C++ compiler). Each rule
compiles once per process: ~30 s with inductor's disk cache cold, ~3 s warm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fitq.worker.engine import optimizers
from fitq.worker.engine.pack import Pack, fused
from fitq.worker.engine.pack.optim import PackedOptimizer, slot_init
from tests.engine.helpers import assert_weights_equal
from tests.engine.pack_helpers import ROWS, data, member_specs
from tests.engine.test_pack import OPTIMIZERS

pytestmark = pytest.mark.skipif(not fused.available(), reason="needs a C++ compiler (inductor)")

P = 256  # a row: the rule's arithmetic is per element, its size does not matter


def _buffers(opt: PackedOptimizer, seed: int) -> dict[str, torch.Tensor]:
    """Weights drawn from `seed`, slots at the solo optimizer's start."""
    k = len(opt.configs)
    gen = torch.Generator().manual_seed(seed)
    bufs = {"p": torch.randn(k, P, generator=gen, dtype=torch.float64)}
    for s in opt.slots:
        start = [slot_init(c, s) for c in opt.configs]
        bufs[s] = torch.tensor(start, dtype=torch.float64).view(-1, 1).repeat(1, P)
    return bufs


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_each_rule_fused_equals_the_eager_rule(name):
    specs = member_specs(OPTIMIZERS[name])
    configs = [optimizers.make_config(s["compile"]["optimizer"]) for s in specs]
    eager, fusing = PackedOptimizer(configs), PackedOptimizer(configs, fuse=True)
    like = torch.empty(0, dtype=torch.float64)
    a, b = _buffers(eager, 0), _buffers(eager, 0)
    for t in range(1, 6):
        steps = np.full((1, len(configs)), t)
        coefs = {**eager.coefficients(like)}
        coefs.update({n: v[0] for n, v in eager.step_coefficients(steps, like).items()})
        grad = torch.randn(len(configs), P, dtype=torch.float64)
        for opt, bufs in ((eager, a), (fusing, b)):
            slots = {s: bufs[s] for s in opt.slots}
            work = torch.empty(len(configs), P, dtype=torch.float64)
            opt.update(bufs["p"], grad.clone(), slots, coefs, work)
    assert not fused._broken, "the rule did not compile: the eager rule ran instead"
    for n in a:
        torch.testing.assert_close(b[n], a[n], rtol=1e-13, atol=1e-15, msg=n)


def test_a_fused_members_bits_do_not_depend_on_its_packmates():
    specs = member_specs(OPTIMIZERS["adam"], epochs=2)
    datasets = [data(ROWS[i], i) for i in range(3)]

    def run(ids: list[int]) -> Pack:  # float64: the kernel the rule test compiled
        pack = Pack("cpu", torch.float64, fused_update=True)
        for i in ids:
            pack.add(f"m{i}", specs[i], *datasets[i], dataset_key=i)
        while any(not r.done for r in pack.run_epoch().values()):
            pass
        return pack

    three, alone, first = run([0, 1, 2]), run([1]), run([1, 2])
    assert three._seating is None or three._seating.opt.fused
    assert_weights_equal(three.weights("m1"), alone.weights("m1"))
    assert_weights_equal(three.weights("m1"), first.weights("m1"))
