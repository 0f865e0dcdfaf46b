"""The packed pieces against the solo ones, member by member: each loss's per-row values
and weighted gradients sum to the solo loss and its gradient (float64, short batches
padded); a member's update is bit for bit the same whether the pack mixes the rule's
switches (momentum, nesterov, centered, amsgrad) or not."""

from __future__ import annotations

import pytest
import torch

from fitq.worker.engine import losses
from fitq.worker.engine.optimizers import make_config
from fitq.worker.engine.pack.objectives import Loss
from fitq.worker.engine.pack.optim import PackedOptimizer, own_slots, slot_init
from tests.engine.helpers import normalized

LOSSES = [
    ({"name": "sparse_categorical_crossentropy", "from_logits": True}, 3),
    ({"name": "sparse_categorical_crossentropy", "from_logits": False}, 3),
    ({"name": "categorical_crossentropy", "from_logits": True}, 3),
    ({"name": "categorical_crossentropy", "from_logits": False}, 3),
    ({"name": "binary_crossentropy", "from_logits": True}, 1),
    ({"name": "binary_crossentropy", "from_logits": False}, 1),
    ({"name": "mean_squared_error"}, 2),
    ({"name": "mean_absolute_error"}, 2),
    ({"name": "huber", "delta": 0.3}, 2),
]


def _case(name: str, k: int, rows: list[int], width: int, g: torch.Generator):
    """Outputs and targets for len(rows) members, member i with rows[i] real rows."""
    n = len(rows)
    out = torch.randn(n, width, k, generator=g, dtype=torch.float64)
    if not name.endswith("logits") and "crossentropy" in name:
        out = out.sigmoid() if k == 1 else out.softmax(-1) * 0.9 + 0.01
    if name.startswith("sparse"):
        y = torch.randint(0, k, (n, width, 1), generator=g)
    elif "crossentropy" in name:
        y = torch.nn.functional.one_hot(torch.randint(0, k, (n, width), generator=g), k).double()
    else:
        y = torch.randn(n, width, k, generator=g, dtype=torch.float64)
    valid = torch.zeros(n, width, dtype=torch.float64)
    for i, r in enumerate(rows):
        valid[i, :r] = 1
    return out, y, valid


@pytest.mark.parametrize(("config", "k"), LOSSES, ids=lambda c: str(c))
def test_each_members_loss_and_gradient_are_the_solo_ones(config, k):
    solo = losses.get(normalized("loss", config))
    tag = config["name"] + ("_logits" if config.get("from_logits") else "")
    rows = [5, 8, 3]
    out, y, valid = _case(tag, k, rows, 8, torch.Generator().manual_seed(1))
    w = valid / valid.sum(1, keepdim=True)
    values, grad = Loss(solo).rows_and_grad(out.clone(), y, w)
    for i, r in enumerate(rows):
        into = torch.zeros((), dtype=torch.float64)
        expected = solo.total_and_grad(out[i, :r].clone(), y[i, :r], into)
        torch.testing.assert_close((values[i] * valid[i]).sum(), into, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(grad[i, :r], expected, rtol=1e-12, atol=1e-14)
        assert torch.equal(grad[i, r:], torch.zeros_like(grad[i, r:]))  # padding adds nothing


SWITCHES = {
    "sgd": (
        {"name": "sgd", "learning_rate": 0.1},
        {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9, "nesterov": True},
    ),
    "rmsprop": (
        {"name": "rmsprop", "learning_rate": 0.01},
        {"name": "rmsprop", "learning_rate": 0.01, "momentum": 0.5, "centered": True},
    ),
    "adam": (
        {"name": "adam", "learning_rate": 0.01},
        {"name": "adam", "learning_rate": 0.02, "amsgrad": True},
    ),
}


@pytest.mark.parametrize("name", list(SWITCHES))
def test_a_members_update_does_not_depend_on_its_packmates_switches(name):
    """Member 0 (the plain rule) beside a plain member and beside one using every switch."""
    plain, switched = (make_config(normalized("optimizer", c)) for c in SWITCHES[name])
    g = torch.Generator().manual_seed(2)
    params = torch.randn(2, 32, generator=g)
    grads = [torch.randn(2, 32, generator=g) for _ in range(4)]
    results = []
    for mate in (plain, switched):
        opt = PackedOptimizer([plain, mate])
        p = params.clone()
        slots = {
            s: torch.stack([torch.full((32,), slot_init(c, s)) for c in (plain, mate)])
            for s in opt.slots
        }
        coefs = opt.coefficients(p)
        steps = opt.step_coefficients(torch.arange(1, 5).view(4, 1).repeat(1, 2).numpy(), p)
        for t, grad in enumerate(grads):
            c = dict(coefs, **{n: v[t] for n, v in steps.items()})
            opt.update(p, grad.clone(), slots, c, torch.empty_like(p))
        results.append((p[0].clone(), {s: slots[s][0].clone() for s in own_slots(plain)}))
    assert torch.equal(results[0][0], results[1][0])
    for s, t in results[0][1].items():
        assert torch.equal(t, results[1][1][s]), s
