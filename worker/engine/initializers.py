"""Keras initializers, drawn on the CPU from one seeded torch.Generator.

Weights are drawn in float32 on the CPU whatever the training device, so a seed
gives the same initial weights on every machine. Fans follow Keras for a kernel
`[in, out]`: fan_in = in, fan_out = out (a 1-D shape has fan_in = fan_out = its
length). Keras' VarianceScaling "truncated_normal" divides the standard
deviation by 0.8796… (the std of a unit normal truncated at ±2) and cuts at ±2σ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from torch import Tensor

from fitq.worker.engine.config import FLOAT32_MAX, Checked, read, real
from fitq.worker.engine.errors import ConfigError

_TRUNC_STD = 0.87962566103423978  # std of N(0, 1) truncated to [−2, 2]

# name → (scale, mode, distribution) for Keras' VarianceScaling family
_VARIANCE_SCALING = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
}


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[0], shape[1]


def _truncated_normal(out: Tensor, mean: float, std: float, g: torch.Generator) -> Tensor:
    return torch.nn.init.trunc_normal_(
        out, mean=mean, std=std, a=mean - 2.0 * std, b=mean + 2.0 * std, generator=g
    )


@dataclass(frozen=True)
class Constant(Checked):
    value: Annotated[float, real()]


@dataclass(frozen=True)
class Normal(Checked):
    """random_normal and truncated_normal (cut at ±2σ); stddev 0 gives the mean."""

    mean: Annotated[float, real()]
    stddev: Annotated[float, real(ge=0)]


@dataclass(frozen=True)
class Uniform(Checked):
    """random_uniform on [minval, maxval]; torch draws it only where the width fits float32."""

    minval: Annotated[float, real()]
    maxval: Annotated[float, real()]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.minval > self.maxval:
            raise ConfigError(f"maxval must be >= minval ({self.minval}), got {self.maxval}")
        if self.maxval - self.minval > FLOAT32_MAX:
            raise ConfigError(
                f"maxval - minval must be <= {FLOAT32_MAX:g} (float32), got "
                f"{self.maxval - self.minval:g}"
            )


@dataclass(frozen=True)
class _Named(Checked):
    """The initializers without parameters."""


# name → its parameters; the variance-scaling family and zeros/ones take none
PARAMETERS: dict[str, type[Checked]] = {
    **{name: _Named for name in (*_VARIANCE_SCALING, "zeros", "ones")},
    "constant": Constant,
    "random_normal": Normal,
    "truncated_normal": Normal,
    "random_uniform": Uniform,
}


def initialize(
    config: Mapping[str, Any],
    shape: tuple[int, ...],
    g: torch.Generator,
    where: str = "initializer",
) -> Tensor:
    """A new float32 CPU tensor of `shape` drawn as the normalized initializer `config`
    (`{"name": …, params}`) says."""
    name = config.get("name") if isinstance(config, Mapping) else config
    if not isinstance(name, str) or name not in PARAMETERS:
        raise ConfigError(f"{where}: unknown initializer {name!r}")
    params: Checked = read(PARAMETERS[name], config, where, tag="name")
    out = torch.empty(shape, dtype=torch.float32)
    if name in _VARIANCE_SCALING:
        scale, mode, distribution = _VARIANCE_SCALING[name]
        fan_in, fan_out = _fans(shape)
        n = {"fan_in": fan_in, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
        if distribution == "uniform":
            limit = math.sqrt(3.0 * scale / n)
            return out.uniform_(-limit, limit, generator=g)
        return _truncated_normal(out, 0.0, math.sqrt(scale / n) / _TRUNC_STD, g)
    if name == "zeros":
        return out.zero_()
    if name == "ones":
        return out.fill_(1.0)
    if isinstance(params, Constant):
        return out.fill_(params.value)
    if isinstance(params, Uniform):
        return out.uniform_(params.minval, params.maxval, generator=g)
    assert isinstance(params, Normal)
    if name == "random_normal":
        return out.normal_(params.mean, params.stddev, generator=g)
    if params.stddev == 0:  # a cut at ±2σ = the mean itself (torch's would divide by 0)
        return out.fill_(params.mean)
    return _truncated_normal(out, params.mean, params.stddev, g)
