"""How many jobs a pack takes: FITQ_PACK_MAX when set, a fixed number on a CPU, and on
CUDA what free memory holds at the first job's estimate per member."""

from __future__ import annotations

from typing import Any

import pytest

from fitq.service.settings import Settings
from fitq.service.spec import parse_spec
from fitq.worker import pack_size
from tests.support.specs import digits_spec


def normalized(**overrides: Any) -> dict[str, Any]:
    return parse_spec(digits_spec(**overrides)).model_dump(mode="json")


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1"])
def test_the_setting_decides_when_set(device: str) -> None:
    settings = Settings(pack_max=5)
    assert pack_size.pack_max(settings, device, normalized(), 1797) == 5


def test_a_cpu_takes_the_fixed_default() -> None:
    assert pack_size.pack_max(Settings(), "cpu", normalized(), 1797) == pack_size.CPU_PACK_MAX


def test_a_members_estimate_grows_with_its_model_its_batch_and_its_rows() -> None:
    base = pack_size.member_bytes(normalized(), 1797)
    assert pack_size.member_bytes(normalized(hidden=(256,)), 1797) > base
    assert pack_size.member_bytes(normalized(fit={"batch_size": 4096}), 1797) > base
    assert pack_size.member_bytes(normalized(), 17970) > base
    parameters = 64 * 64 + 64 + 64 * 10 + 10
    assert base >= pack_size.FLOAT_BYTES * pack_size.PARAMETER_COPIES * parameters
