"""Every optimizer's trajectory equals its reference step for step in float64: torch.optim
where torch has the optimizer, the published rule for Lion and FTRL (written out below;
tests/engine/test_keras_optimizers.py compares them with Keras too). The per-tensor and
foreach paths agree, with the step's scalars as floats or as 0-d tensors (the form a
CUDA graph replays); the state round-trips; a config takes the normalized spec and
nothing else, and the bounds its update rule needs are refused by name."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

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
    return torch.sin(3.0 * p) + 0.5 * p + 0.1 * torch.cos(torch.tensor(float(step), dtype=p.dtype))


def _config(spec: dict[str, Any] | str) -> optimizers.Config:
    """The engine's config of an optimizer as a user writes it (Keras defaults filled)."""
    return optimizers.make_config(normalized("optimizer", spec))


Trajectory = list[list[torch.Tensor]]


def _ours(spec: dict[str, Any], foreach: bool, device_scalars: bool = False) -> Trajectory:
    params = _params()
    opt = optimizers.Optimizer(
        _config(spec),
        params,
        foreach=foreach,
        device_scalars=torch.device("cpu") if device_scalars else None,
    )
    trajectory = []
    for step in range(STEPS):
        opt.step([_grad(p, step) for p in params])
        trajectory.append([p.clone() for p in params])
    assert opt.state.step == STEPS
    return trajectory


@contextlib.contextmanager
def _float64_scalars() -> Iterator[None]:
    """torch.optim keeps step counters and NAdam's μ product in the default dtype."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def _torch(make: Callable[[list[torch.Tensor]], Any]) -> Trajectory:
    with _float64_scalars():
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


# --------------------------------------------------- the published rules torch lacks


def lion_reference(lr, beta_1, beta_2, wd) -> Callable[[list[torch.Tensor]], Any]:
    """Chen et al. (2023), Algorithm 2, written out: a reference with torch.optim's step()."""

    class Lion:
        def __init__(self, params):
            self.params, self.m = params, [torch.zeros_like(p) for p in params]

        @torch.no_grad()
        def step(self):
            for p, m in zip(self.params, self.m, strict=True):
                c = beta_1 * m + (1 - beta_1) * p.grad
                p -= lr * (torch.sign(c) + wd * p)
                m.copy_(beta_2 * m + (1 - beta_2) * p.grad)

    return Lion


def ftrl_reference(lr, power, n0, l1, l2, shrinkage, beta) -> Callable[[list[torch.Tensor]], Any]:
    """FTRL-Proximal (McMahan et al., 2013, Algorithm 1) with Keras' additions (power,
    l2 shrinkage, β), written from Keras' documentation of Ftrl."""

    class Ftrl:
        def __init__(self, params):
            self.params = params
            self.n = [torch.full_like(p, n0) for p in params]
            self.z = [torch.zeros_like(p) for p in params]

        @torch.no_grad()
        def step(self):
            for p, n, z in zip(self.params, self.n, self.z, strict=True):
                g = p.grad
                n_new = n + g * g
                sigma = (n_new ** (-power) - n ** (-power)) / lr
                z += g + 2 * shrinkage * p - sigma * p
                quadratic = n_new ** (-power) / lr + 2 * (l2 + beta / (2 * lr))
                p.copy_(torch.where(z.abs() <= l1, 0.0, -(z - torch.sign(z) * l1) / quadratic))
                n.copy_(n_new)

    return Ftrl


# name → (fitq optimizer spec, the reference with the same hyperparameters)
CASES: dict[str, tuple[dict[str, Any], Callable[[list[torch.Tensor]], Any]]] = {
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
        {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True,
         "weight_decay": 0.01},
        lambda p: torch.optim.SGD(
            p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, foreach=False
        ),
    ),
    "adagrad": (
        {"name": "adagrad", "learning_rate": 0.1, "initial_accumulator_value": 0.1,
         "epsilon": 1e-7},
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
        {"name": "rmsprop", "learning_rate": 0.01, "centered": True, "momentum": 0.5,
         "weight_decay": 0.01},
        lambda p: torch.optim.RMSprop(
            p, lr=0.01, alpha=0.9, eps=1e-7, momentum=0.5, centered=True, weight_decay=0.01,
            foreach=False,
        ),
    ),
    "adadelta": (
        {"name": "adadelta", "learning_rate": 1.0},
        lambda p: torch.optim.Adadelta(p, lr=1.0, rho=0.95, eps=1e-7, foreach=False),
    ),
    "adadelta_weight_decay": (
        {"name": "adadelta", "learning_rate": 0.5, "rho": 0.8, "epsilon": 1e-5,
         "weight_decay": 0.02},
        lambda p: torch.optim.Adadelta(
            p, lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.02, foreach=False
        ),
    ),
    "adam": (
        {"name": "adam", "learning_rate": 0.01},
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.999), eps=1e-7, foreach=False),
    ),
    "adam_weight_decay": (
        {"name": "adam", "learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99,
         "weight_decay": 0.01},
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
    "adamax": (
        {"name": "adamax", "learning_rate": 0.02},
        lambda p: torch.optim.Adamax(p, lr=0.02, betas=(0.9, 0.999), eps=1e-7, foreach=False),
    ),
    "adamax_weight_decay": (
        {"name": "adamax", "learning_rate": 0.02, "beta_1": 0.7, "beta_2": 0.9,
         "epsilon": 1e-4, "weight_decay": 0.05},
        lambda p: torch.optim.Adamax(
            p, lr=0.02, betas=(0.7, 0.9), eps=1e-4, weight_decay=0.05, foreach=False
        ),
    ),
    "nadam": (
        {"name": "nadam", "learning_rate": 0.01},
        lambda p: torch.optim.NAdam(
            p, lr=0.01, betas=(0.9, 0.999), eps=1e-7, momentum_decay=1.0, foreach=False
        ),
    ),
    "nadam_weight_decay": (
        {"name": "nadam", "learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.95,
         "weight_decay": 0.03},
        lambda p: torch.optim.NAdam(
            p, lr=0.01, betas=(0.8, 0.95), eps=1e-7, weight_decay=0.03, momentum_decay=1.0,
            foreach=False,
        ),
    ),
    "lion": (
        {"name": "lion", "learning_rate": 0.01},
        lion_reference(0.01, 0.9, 0.99, 0.0),
    ),
    "lion_weight_decay": (
        {"name": "lion", "learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.9,
         "weight_decay": 0.1},
        lion_reference(0.01, 0.5, 0.9, 0.1),
    ),
    "ftrl": (
        {"name": "ftrl", "learning_rate": 0.1},
        ftrl_reference(0.1, -0.5, 0.1, 0.0, 0.0, 0.0, 0.0),
    ),
    "ftrl_regularized": (
        {"name": "ftrl", "learning_rate": 0.2, "learning_rate_power": -0.7,
         "initial_accumulator_value": 0.5, "l1_regularization_strength": 0.05,
         "l2_regularization_strength": 0.1, "l2_shrinkage_regularization_strength": 0.02,
         "beta": 0.3},
        ftrl_reference(0.2, -0.7, 0.5, 0.05, 0.1, 0.02, 0.3),
    ),
}  # fmt: skip


class TestTrajectories:
    def test_every_optimizer_has_cases(self):
        assert {spec["name"] for spec, _ in CASES.values()} == set(optimizers.CONFIGS)

    @pytest.mark.parametrize("case", sorted(CASES))
    @pytest.mark.parametrize("foreach", [False, True], ids=["per_tensor", "foreach"])
    def test_equals_the_reference(self, case, foreach):
        spec, make = CASES[case]
        _assert_trajectories_close(_ours(spec, foreach), _torch(make))

    @pytest.mark.parametrize("case", sorted(CASES))
    def test_foreach_path_equals_per_tensor_path(self, case):
        spec, _ = CASES[case]
        _assert_trajectories_close(_ours(spec, True), _ours(spec, False), rtol=1e-13, atol=1e-15)

    @pytest.mark.parametrize("case", sorted(CASES))
    def test_device_scalars_equal_the_host_path(self, case):
        """The form a CUDA graph replays: the step's scalars read from 0-d tensors."""
        spec, _ = CASES[case]
        _assert_trajectories_close(_ours(spec, True, device_scalars=True), _ours(spec, False))


COSINE = {"schedule": "cosine_decay", "initial_learning_rate": 0.05, "decay_steps": 40,
          "alpha": 0.1, "warmup_target": 0.1, "warmup_steps": 10}  # fmt: skip


class TestSchedules:
    @pytest.mark.parametrize(
        "name,make",
        [
            ("sgd", lambda p: torch.optim.SGD(p, lr=1.0, momentum=0.9, foreach=False)),
            ("adam", lambda p: torch.optim.Adam(p, lr=1.0, eps=1e-7, foreach=False)),
            ("adamw", lambda p: torch.optim.AdamW(p, lr=1.0, eps=1e-7, weight_decay=0.004,
                                                  foreach=False)),
            ("adamax", lambda p: torch.optim.Adamax(p, lr=1.0, eps=1e-7, foreach=False)),
        ],
    )  # fmt: skip
    def test_equals_torch_under_lambda_lr(self, name, make):
        """torch's LambdaLR stepped after each update gives the update t the rate
        schedule(t − 1): Keras' `iterations`, the updates before it."""
        extra = {"momentum": 0.9} if name == "sgd" else {}
        cfg = _config({"name": name, "learning_rate": COSINE, **extra})
        schedule = cfg.schedule
        assert schedule is not None

        def with_scheduler(params):
            opt = make(params)
            scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: schedule(t))

            class Stepped:
                def step(self):
                    opt.step()
                    scheduler.step()

            return Stepped()

        spec = {"name": name, "learning_rate": COSINE, **extra}
        _assert_trajectories_close(_ours(spec, False), _torch(with_scheduler))

    @pytest.mark.parametrize("name", sorted(optimizers.CONFIGS))
    def test_device_scalars_follow_the_schedule(self, name):
        rate = COSINE if name != "ftrl" else {**COSINE, "initial_learning_rate": 0.01}
        spec = {"name": name, "learning_rate": rate}
        spec |= {"momentum": 0.5} if name == "sgd" else {}
        _assert_trajectories_close(_ours(spec, True, device_scalars=True), _ours(spec, False))


class TestClipping:
    @pytest.mark.parametrize("key", ["clipnorm", "clipvalue", "global_clipnorm"])
    def test_one_flat_buffer_clips_as_its_variables_would(self, key):
        """The trainer's parameters are one flat buffer: told the variables' sizes, the
        clip (clipnorm: per variable) does what it does to the variables themselves."""
        spec = {"name": "sgd", "learning_rate": 0.1, key: 0.5}
        apart = _params()
        flat = torch.cat([p.reshape(-1) for p in apart])
        sizes = [p.numel() for p in apart]
        together = optimizers.Optimizer(_config(spec), [flat], sizes=sizes)
        separate = optimizers.Optimizer(_config(spec), apart)
        for step in range(5):
            grads = [_grad(p, step) for p in apart]
            separate.step(grads)
            together.step([torch.cat([g.reshape(-1) for g in grads])])
        torch.testing.assert_close(flat, torch.cat([p.reshape(-1) for p in apart]))

    def test_clipnorm_scales_each_variable_to_its_norm_and_no_further(self):
        big, small = (
            torch.full((4,), 3.0, dtype=torch.float64),
            torch.full((2,), 0.1, dtype=torch.float64),
        )
        cfg = _config({"name": "sgd", "learning_rate": 1.0, "clipnorm": 1.0})
        params = [torch.zeros(4, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)]
        opt = optimizers.Optimizer(cfg, params)
        opt.step([big.clone(), small.clone()])
        assert torch.linalg.vector_norm(opt.params[0]).item() == pytest.approx(1.0)
        torch.testing.assert_close(opt.params[1], -small)


DECOUPLED = {"adamw", "lion", "ftrl"}  # the others: torch's L2 on the gradient


class TestWeightDecay:
    @pytest.mark.parametrize("name", sorted(optimizers.CONFIGS))
    def test_decoupled_for_adamw_lion_ftrl_and_l2_for_the_others(self, name):
        """A step with weight decay equals a step without it on the gradient g + wd·p
        (L2), or on the parameters p·(1 − lr·wd) (decoupled), and not the other one."""
        lr, wd = 0.1, 0.5
        extra = {"momentum": 0.5} if name == "sgd" else {}

        def one_step(p: torch.Tensor, g: torch.Tensor, decay: float) -> torch.Tensor:
            cfg = _config({"name": name, "learning_rate": lr, "weight_decay": decay, **extra})
            p = p.clone()
            optimizers.Optimizer(cfg, [p]).step([g.clone()])
            return p

        p, g = _params()[0], _grad(_params()[0], 0)
        ours = one_step(p, g, wd)
        l2 = one_step(p, g + wd * p, 0.0)
        decoupled = one_step(p * (1 - lr * wd), g, 0.0)
        expected, other = (decoupled, l2) if name in DECOUPLED else (l2, decoupled)
        torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-14)
        if name != "sgd":  # plain SGD's two forms coincide
            assert not torch.allclose(ours, other, rtol=1e-6, atol=0)


class TestState:
    @pytest.mark.parametrize("case", ["amsgrad", "nadam", "ftrl_regularized", "adadelta"])
    def test_state_round_trips_and_continues_identically(self, case):
        spec, _ = CASES[case]
        params = _params()
        opt = optimizers.Optimizer(_config(spec), params)
        for step in range(10):
            opt.step([_grad(p, step) for p in params])
        saved = {k: t.clone() for k, t in opt.state_tensors().items()}
        numbers = opt.host_numbers()
        resumed_params = [p.clone() for p in params]
        resumed = optimizers.Optimizer(_config(spec), resumed_params)
        resumed.load_state_tensors(opt.state.step, saved)
        resumed.load_host_numbers(numbers)
        for step in range(10, 20):
            opt.step([_grad(p, step) for p in params])
            resumed.step([_grad(p, step) for p in resumed_params])
        for a, b in zip(params, resumed_params, strict=True):
            assert torch.equal(a, b)

    def test_host_numbers_hold_nadams_product_and_a_lowered_rate(self):
        opt = optimizers.Optimizer(_config({"name": "nadam"}), _params())
        opt.step([_grad(p, 0) for p in opt.params])
        opt.set_learning_rate(0.5)
        assert opt.host_numbers() == {"mu_product": pytest.approx(0.9 * (1 - 0.5 * 0.96)),
                                      "learning_rate": 0.5}  # fmt: skip

    def test_slot_names(self):
        opt = optimizers.Optimizer(_config("adam"), _params())
        assert set(opt.state.slots) == {"exp_avg", "exp_avg_sq"}
        assert "optimizer.exp_avg.0" in opt.state_tensors()

    def test_accumulators_start_at_the_initial_value(self):
        for name, slot in (("adagrad", "sum"), ("ftrl", "accumulator")):
            cfg = _config({"name": name, "initial_accumulator_value": 0.25})
            opt = optimizers.Optimizer(cfg, _params())
            assert torch.all(opt.state.slots[slot][0] == 0.25)


class TestTheContract:
    def test_every_optimizer_documents_its_rule_and_the_name_mapping(self):
        for name, cls in optimizers.CONFIGS.items():
            doc = cls.__doc__ or ""
            assert "Keras → torch" in doc or "Keras names" in doc, name
            assert "←" in doc, name  # the rule, written out

    @pytest.mark.parametrize("name", sorted(optimizers.CONFIGS))
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

    def test_refuses_a_schedule_it_does_not_know_or_that_is_not_normalized(self):
        base = normalized("optimizer", "sgd")
        with pytest.raises(ConfigError, match="unknown learning-rate schedule 'step_decay'"):
            optimizers.make_config({**base, "learning_rate": {"schedule": "step_decay"}})
        partial = {"schedule": "exponential_decay", "initial_learning_rate": 0.1,
                   "decay_steps": 10.0, "decay_rate": 0.5}  # fmt: skip
        with pytest.raises(ConfigError, match="missing staircase"):
            optimizers.make_config({**base, "learning_rate": partial})


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
            ({"name": "adadelta", "rho": 1.0}, "rho must be >= 0 and < 1"),
            ({"name": "lion", "beta_1": 0.0}, "beta_1 must be > 0 and <= 1"),
            ({"name": "ftrl", "learning_rate_power": 0.5}, "learning_rate_power must be"),
            ({"name": "ftrl", "initial_accumulator_value": 0.0}, "initial_accumulator_value"),
            ({"name": "adam", "clipnorm": 0.0}, "clipnorm must be > 0"),
            ({"name": "adam", "clipnorm": 1.0, "clipvalue": 1.0}, "at most one of clipnorm"),
            ({"name": "sgd", "momentum": "0.9"}, "momentum must be"),
            ({"name": "rprop"}, "rprop"),
        ],
    )
    def test_bad_values_are_refused_by_name(self, changes, fragment):
        name = changes["name"]
        defaults = normalized("optimizer", name) if name in optimizers.CONFIGS else {}
        with pytest.raises(ConfigError, match=fragment):
            optimizers.make_config({**defaults, **changes})

    def test_ftrl_refuses_a_schedule_that_reaches_zero(self):
        cosine = {"schedule": "cosine_decay", "initial_learning_rate": 0.1, "decay_steps": 10}
        spec = normalized("optimizer", {"name": "sgd", "learning_rate": cosine})
        ftrl = {**normalized("optimizer", "ftrl"), "learning_rate": spec["learning_rate"]}
        with pytest.raises(ConfigError, match="ftrl divides by the learning rate"):
            optimizers.make_config(ftrl)
