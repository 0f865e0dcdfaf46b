"""Every optimizer's trajectory equals torch.optim's, step for step, in float64; the
per-tensor and foreach paths agree; a config takes the normalized spec and nothing else;
the bounds its update rule needs are refused by name."""

from __future__ import annotations

import pytest
import torch

from fitq.worker.engine import optimizers
from fitq.worker.engine.errors import ConfigError
from tests.engine.helpers import normalized

STEPS = 60
RTOL, ATOL = 1e-10, 1e-13  # float64; differences are rounding in the order of operations


def _params() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [
        torch.randn(5, 4, generator=g, dtype=torch.float64),
        torch.randn(4, generator=g, dtype=torch.float64),
        torch.randn(3, generator=g, dtype=torch.float64),
    ]


def _grad(p: torch.Tensor, step: int) -> torch.Tensor:
    """A gradient that depends on the parameter and the step: trajectories must track."""
    return torch.sin(3.0 * p) + 0.5 * p + 0.1 * torch.cos(torch.tensor(float(step)))


def _config(spec: dict | str) -> optimizers.Config:
    """The engine's config of an optimizer as a user writes it (Keras defaults filled)."""
    return optimizers.make_config(normalized("optimizer", spec))


def _ours(spec: dict, foreach: bool) -> list[list[torch.Tensor]]:
    params = _params()
    opt = optimizers.Optimizer(_config(spec), params, foreach=foreach)
    trajectory = []
    for step in range(STEPS):
        opt.step([_grad(p, step) for p in params])
        trajectory.append([p.clone() for p in params])
    assert opt.state.step == STEPS
    return trajectory


def _torch(make) -> list[list[torch.Tensor]]:
    params = [p.clone().requires_grad_() for p in _params()]
    opt = make(params)
    trajectory = []
    for step in range(STEPS):
        for p in params:
            p.grad = _grad(p.detach(), step)
        opt.step()
        trajectory.append([p.detach().clone() for p in params])
    return trajectory


def _assert_trajectories_close(ours, ref, rtol=RTOL, atol=ATOL):
    for step, (a, b) in enumerate(zip(ours, ref, strict=True)):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            torch.testing.assert_close(
                x, y, rtol=rtol, atol=atol, msg=f"step {step + 1}, tensor {i}"
            )


# name → (fitq optimizer spec, the same optimizer in torch.optim)
CASES = {
    "sgd": (
        {"name": "sgd", "learning_rate": 0.05},
        lambda p: torch.optim.SGD(p, lr=0.05, foreach=False),
    ),
    "sgd_weight_decay": (
        {"name": "sgd", "learning_rate": 0.05, "weight_decay": 0.01},
        lambda p: torch.optim.SGD(p, lr=0.05, weight_decay=0.01, foreach=False),
    ),
    "momentum": (
        {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, foreach=False),
    ),
    "nesterov": (
        {
            "name": "sgd",
            "learning_rate": 0.05,
            "momentum": 0.9,
            "nesterov": True,
            "weight_decay": 0.01,
        },
        lambda p: torch.optim.SGD(
            p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, foreach=False
        ),
    ),
    "adagrad": (
        {
            "name": "adagrad",
            "learning_rate": 0.1,
            "initial_accumulator_value": 0.1,
            "epsilon": 1e-7,
        },
        lambda p: torch.optim.Adagrad(
            p, lr=0.1, initial_accumulator_value=0.1, eps=1e-7, foreach=False
        ),
    ),
    "adagrad_weight_decay": (
        {"name": "adagrad", "learning_rate": 0.1, "weight_decay": 0.01},
        lambda p: torch.optim.Adagrad(
            p, lr=0.1, initial_accumulator_value=0.1, eps=1e-7, weight_decay=0.01, foreach=False
        ),
    ),
    "rmsprop": (
        {"name": "rmsprop", "learning_rate": 0.01, "rho": 0.9, "epsilon": 1e-7},
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-7, foreach=False),
    ),
    "rmsprop_momentum": (
        {"name": "rmsprop", "learning_rate": 0.01, "rho": 0.8, "momentum": 0.5},
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.8, eps=1e-7, momentum=0.5, foreach=False),
    ),
    "rmsprop_centered": (
        {
            "name": "rmsprop",
            "learning_rate": 0.01,
            "centered": True,
            "momentum": 0.5,
            "weight_decay": 0.01,
        },
        lambda p: torch.optim.RMSprop(
            p,
            lr=0.01,
            alpha=0.9,
            eps=1e-7,
            momentum=0.5,
            centered=True,
            weight_decay=0.01,
            foreach=False,
        ),
    ),
    "adam": (
        {"name": "adam", "learning_rate": 0.01},
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.999), eps=1e-7, foreach=False),
    ),
    "adam_weight_decay": (
        {
            "name": "adam",
            "learning_rate": 0.01,
            "beta_1": 0.8,
            "beta_2": 0.99,
            "weight_decay": 0.01,
        },
        lambda p: torch.optim.Adam(
            p, lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01, foreach=False
        ),
    ),
    "amsgrad": (
        {"name": "adam", "learning_rate": 0.01, "amsgrad": True},
        lambda p: torch.optim.Adam(p, lr=0.01, eps=1e-7, amsgrad=True, foreach=False),
    ),
    "adamw": (
        {"name": "adamw", "learning_rate": 0.01},
        lambda p: torch.optim.AdamW(p, lr=0.01, eps=1e-7, weight_decay=0.004, foreach=False),
    ),
    "adamw_amsgrad": (
        {"name": "adamw", "learning_rate": 0.01, "weight_decay": 0.1, "amsgrad": True},
        lambda p: torch.optim.AdamW(
            p, lr=0.01, eps=1e-7, weight_decay=0.1, amsgrad=True, foreach=False
        ),
    ),
}


class TestTrajectories:
    @pytest.mark.parametrize("case", sorted(CASES))
    @pytest.mark.parametrize("foreach", [False, True], ids=["per_tensor", "foreach"])
    def test_equals_torch_optim(self, case, foreach):
        spec, make = CASES[case]
        _assert_trajectories_close(_ours(spec, foreach), _torch(make))

    @pytest.mark.parametrize("case", sorted(CASES))
    def test_foreach_path_equals_per_tensor_path(self, case):
        spec, _ = CASES[case]
        _assert_trajectories_close(_ours(spec, True), _ours(spec, False), rtol=1e-13, atol=1e-15)

    @pytest.mark.parametrize("amsgrad", [False, True])
    def test_adam_with_device_scalars_equals_the_host_path(self, amsgrad):
        """The form a CUDA graph replays: step size and √(1 − β₂ᵗ) read from tensors."""
        cfg = _config({"name": "adam", "learning_rate": 0.01, "amsgrad": amsgrad})
        ref = _ours({"name": "adam", "learning_rate": 0.01, "amsgrad": amsgrad}, False)
        params = _params()
        opt = optimizers.Optimizer(cfg, params)
        scalars = (torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64))
        for step in range(STEPS):
            step_size, bc2_sqrt = optimizers._adam_scalars(cfg, opt.state.step + 1)
            scalars[0].fill_(step_size)
            scalars[1].fill_(bc2_sqrt)
            grads = [_grad(p, step) for p in params]
            optimizers.adam_update_foreach(cfg, opt.state, params, grads, scalars)
            torch.testing.assert_close(params, ref[step], rtol=1e-12, atol=1e-14)


class TestState:
    def test_state_round_trips_and_continues_identically(self):
        spec = {"name": "adam", "learning_rate": 0.01, "amsgrad": True}
        params = _params()
        opt = optimizers.Optimizer(_config(spec), params)
        for step in range(10):
            opt.step([_grad(p, step) for p in params])
        saved = {k: t.clone() for k, t in opt.state_tensors().items()}
        resumed_params = [p.clone() for p in params]
        resumed = optimizers.Optimizer(_config(spec), resumed_params)
        resumed.load_state_tensors(opt.state.step, saved)
        for step in range(10, 20):
            opt.step([_grad(p, step) for p in params])
            resumed.step([_grad(p, step) for p in resumed_params])
        for a, b in zip(params, resumed_params, strict=True):
            assert torch.equal(a, b)

    def test_slot_names(self):
        opt = optimizers.Optimizer(_config("adam"), _params())
        assert set(opt.state.slots) == {"exp_avg", "exp_avg_sq"}
        assert "optimizer.exp_avg.0" in opt.state_tensors()


class TestTheContract:
    def test_every_optimizer_documents_its_rule_and_the_name_mapping(self):
        for cls in (
            optimizers.SGDConfig,
            optimizers.AdagradConfig,
            optimizers.RMSpropConfig,
            optimizers.AdamConfig,
            optimizers.AdamWConfig,
        ):
            assert "Keras → torch" in (cls.__doc__ or ""), cls

    @pytest.mark.parametrize("name", ["sgd", "adagrad", "rmsprop", "adam", "adamw"])
    def test_takes_the_normalized_spec_as_it_is(self, name):
        spec = normalized("optimizer", name)
        cfg = optimizers.make_config(spec)
        assert {k: getattr(cfg, k) for k in spec if k != "name"} == {
            k: v for k, v in spec.items() if k != "name"
        }

    @pytest.mark.parametrize(
        "spec,fragment",
        [
            ("adam", "must be an object"),  # a bare name is the service's to resolve
            ({"name": "momentum"}, "unknown optimizer 'momentum'"),  # an alias too
            ({"name": "adam", "learning_rate": 0.01}, "missing .*beta_1"),  # no defaults here
        ],
    )
    def test_refuses_what_the_service_did_not_normalize(self, spec, fragment):
        with pytest.raises(ConfigError, match=fragment):
            optimizers.make_config(spec)

    def test_refuses_a_key_it_does_not_know(self):
        spec = {**normalized("optimizer", "sgd"), "dampening": 0.1}
        with pytest.raises(ConfigError, match="unknown dampening"):
            optimizers.make_config(spec)


class TestValidation:
    @pytest.mark.parametrize(
        "changes,fragment",
        [
            ({"name": "adam", "learning_rate": 0.0}, "learning_rate must be > 0"),
            ({"name": "adam", "learning_rate": -1.0}, "-1.0"),
            ({"name": "adam", "beta_1": 1.0}, "beta_1"),
            ({"name": "sgd", "momentum": -0.5}, "momentum"),
            ({"name": "sgd", "momentum": 1.0}, "momentum must be >= 0 and < 1"),
            ({"name": "rmsprop", "momentum": 1.0}, "momentum must be >= 0 and < 1"),
            ({"name": "sgd", "nesterov": True}, "nesterov"),
            ({"name": "rmsprop", "rho": 1.5}, "rho"),
            ({"name": "adam", "epsilon": float("nan")}, "epsilon"),
            ({"name": "adam", "epsilon": 0.0}, "epsilon must be > 0"),
            ({"name": "adagrad", "learning_rate": 1e39}, "<= 3.40282e\\+38"),
            ({"name": "lion"}, "lion"),
        ],
    )
    def test_bad_values_are_refused_by_name(self, changes, fragment):
        defaults = normalized("optimizer", changes["name"]) if changes["name"] != "lion" else {}
        with pytest.raises(ConfigError, match=fragment):
            optimizers.make_config({**defaults, **changes})
