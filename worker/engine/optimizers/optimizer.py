"""The optimizer: a config, its rule and its state bound to parameters.

One step is two halves, so that the device half can be captured in a CUDA graph:

    begin_step()   host: count the step, evaluate the learning rate (the schedule at
                   Keras' `iterations`, or the current rate), compute the rule's scalars
                   (into 0-d device tensors when `device_scalars` is set)
    apply(grads)   device: clip the gradients, then the rule's update (decay included)

`step(grads)` does both. A replayed graph re-runs `apply` with the scalars
`begin_step` filled in for that step; nothing in `apply` reads the host.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from fitq.worker.engine.config import read
from fitq.worker.engine.errors import ConfigError
from fitq.worker.engine.optimizers.adam import ADAM, ADAMAX, ADAMW, NADAM
from fitq.worker.engine.optimizers.adaptive import ADADELTA, ADAGRAD, RMSPROP
from fitq.worker.engine.optimizers.base import Config, Rule, Scalar, State
from fitq.worker.engine.optimizers.clipping import Clip
from fitq.worker.engine.optimizers.ftrl import FTRL
from fitq.worker.engine.optimizers.lion import LION
from fitq.worker.engine.optimizers.sgd import SGD

RULES: dict[str, Rule] = {
    rule.config.name: rule
    for rule in (SGD, ADAGRAD, RMSPROP, ADADELTA, ADAM, ADAMW, ADAMAX, NADAM, LION, FTRL)
}
CONFIGS: dict[str, type[Config]] = {name: rule.config for name, rule in RULES.items()}
"""Each optimizer's config: the keys of its normalized spec (tests check them)."""

_INITIAL_SLOTS = {"sum": "initial_accumulator_value", "accumulator": "initial_accumulator_value"}


def make_config(spec: Mapping[str, Any]) -> Config:
    """The config of a normalized `compile.optimizer`: its name and every key of that
    optimizer, nothing else (a bare name or an alias is the service's to resolve)."""
    name = spec.get("name") if isinstance(spec, Mapping) else spec
    if not isinstance(name, str) or name not in CONFIGS:
        raise ConfigError(f"compile.optimizer: unknown optimizer {name!r}")
    return read(CONFIGS[name], spec, "compile.optimizer", tag="name")


def slot_init(config: Config, slot: str) -> float:
    """A slot's starting value (Adagrad's and FTRL's accumulators; 0 for the others)."""
    key = _INITIAL_SLOTS.get(slot)
    return float(getattr(config, key)) if key else 0.0


class Optimizer:
    """An optimizer bound to a list of parameters: `step(grads)` updates them in place.

    `sizes`: each Keras variable's element count, in the parameters' order (clipnorm
    clips each variable); None: each parameter is one variable. `device_scalars`: a
    device whose 0-d tensors carry the step's scalars (the foreach path only).
    """

    def __init__(
        self,
        config: Config,
        params: list[Tensor],
        *,
        foreach: bool = True,
        sizes: Sequence[int] | None = None,
        device_scalars: torch.device | None = None,
    ):
        if device_scalars is not None and not foreach:
            raise ValueError("device scalars need the foreach path")
        self.config = config
        self.params = params
        self.foreach = foreach
        self.rule = RULES[config.name]
        # the per-tensor path writes its temporaries (√v + ε, …) here, not into new memory
        self._work = None if foreach else [torch.empty_like(p) for p in params]
        self.state = State(
            slots={
                s: [torch.full_like(p, slot_init(config, s)) for p in params]
                for s in self.rule.slots(config)
            }
        )
        self.clip = Clip.of(config, [p.numel() for p in params] if sizes is None else sizes)
        self.schedule = config.schedule
        # the current rate of a config without a schedule (ReduceLROnPlateau lowers it)
        self.learning_rate: float | None = (
            None if self.schedule is not None else config.constant_learning_rate
        )
        self._device: tuple[Tensor, ...] | None = None
        if device_scalars is not None:
            count = len(self.rule.scalars(config, State(step=1), 1.0))
            dtype = params[0].dtype
            self._device = tuple(
                torch.zeros((), dtype=dtype, device=device_scalars) for _ in range(count)
            )
        self._scalars: tuple[Scalar, ...] | None = None

    # ------------------------------------------------------------------ one step

    def rate(self, iterations: int) -> float:
        """The learning rate of the update that follows `iterations` updates."""
        if self.schedule is not None:
            return self.schedule(iterations)
        assert self.learning_rate is not None
        return self.learning_rate

    def begin_step(self) -> None:
        """The host half of the next step (see the module docstring)."""
        self.state.step += 1
        values = self.rule.scalars(self.config, self.state, self.rate(self.state.step - 1))
        if self._device is None:
            self._scalars = values
            return
        for t, v in zip(self._device, values, strict=True):
            t.fill_(v)
        self._scalars = self._device

    def apply(self, grads: list[Tensor]) -> None:
        """The device half: clip `grads` (in place), then update the parameters."""
        assert self._scalars is not None, "begin_step() first"
        if self.clip is not None:
            self.clip(grads)
        if self.foreach:
            self.rule.update_foreach(self.config, self.state, self.params, grads, self._scalars)
        else:
            self.rule.update(self.config, self.state, self.params, grads, self._scalars, self._work)

    def step(self, grads: list[Tensor]) -> None:
        self.begin_step()
        self.apply(grads)

    def set_learning_rate(self, rate: float) -> None:
        """Lower (or set) the constant learning rate: Keras' `optimizer.learning_rate = …`."""
        if self.schedule is not None:
            raise ConfigError("the learning rate follows a schedule; it cannot be set")
        self.learning_rate = rate

    # ------------------------------------------------------------------ state

    def state_tensors(self) -> dict[str, Tensor]:
        """The slots as flat names `optimizer.{slot}.{j}` (j = the parameter's position)."""
        return {
            f"optimizer.{slot}.{j}": t
            for slot, ts in self.state.slots.items()
            for j, t in enumerate(ts)
        }

    def load_state_tensors(self, step: int, tensors: Mapping[str, Tensor]) -> None:
        self.state.step = step
        for name, t in self.state_tensors().items():
            t.copy_(tensors[name])

    def host_numbers(self) -> dict[str, float]:
        """What it keeps on the host besides the step: the current learning rate (when
        there is no schedule) and the rule's numbers (NAdam's μ product)."""
        numbers = dict(self.state.numbers)
        if self.learning_rate is not None:
            numbers["learning_rate"] = self.learning_rate
        return numbers

    def load_host_numbers(self, numbers: Mapping[str, float]) -> None:
        """Put back `host_numbers()` (a key it lacks keeps its starting value)."""
        numbers = {k: float(v) for k, v in numbers.items()}
        rate = numbers.pop("learning_rate", None)
        if rate is not None and self.schedule is None:
            self.learning_rate = rate
        self.state.numbers = numbers
