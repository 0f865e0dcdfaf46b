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
from typing import Any

import torch
from torch import Tensor

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


def initialize(
    config: Mapping[str, Any] | str | None, shape: tuple[int, ...], g: torch.Generator
) -> Tensor:
    """A new float32 CPU tensor of `shape` drawn as the Keras initializer `config` says."""
    if config is None:
        config = {"name": "zeros"}
    if isinstance(config, str):
        config = {"name": config}
    name = config.get("name")
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
    if name == "constant":
        return out.fill_(float(config.get("value", 0.0)))
    if name == "random_normal":
        return out.normal_(
            float(config.get("mean", 0.0)), float(config.get("stddev", 0.05)), generator=g
        )
    if name == "random_uniform":
        low, high = float(config.get("minval", -0.05)), float(config.get("maxval", 0.05))
        return out.uniform_(low, high, generator=g)
    if name == "truncated_normal":
        return _truncated_normal(
            out, float(config.get("mean", 0.0)), float(config.get("stddev", 0.05)), g
        )
    raise ConfigError(f"unknown initializer {name!r}")
