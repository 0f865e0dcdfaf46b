"""Specs stored by an earlier fitq still train: ``spec.up_to_date`` brings a stored
normalized spec up to today's contract, and the queue hands workers that form."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from fitq.service import spec as specs
from fitq.worker.engine import ConfigError, Trainer
from tests.support.specs import STORED_BEFORE


def _train(spec: dict[str, Any]) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=64)
    trainer = Trainer(
        model=spec["model"], compile=spec["compile"], fit=spec["fit"], seed=spec["seed"]
    )
    history = trainer.fit(x, y)
    return {k: v[-1] for k, v in history.items()}


def test_a_spec_stored_before_the_contract_grew_trains_once_brought_up_to_date() -> None:
    current = specs.up_to_date(STORED_BEFORE)
    assert _train(current)["loss"] > 0
    _holds(current, STORED_BEFORE)  # nothing the stored spec said was changed: keys were added


def _holds(current: Any, stored: Any, where: str = "spec") -> None:
    if isinstance(stored, dict):
        for key, value in stored.items():
            _holds(current[key], value, f"{where}.{key}")
    elif isinstance(stored, list):
        assert len(current) == len(stored), where
        for i, (now, then) in enumerate(zip(current, stored, strict=True)):
            _holds(now, then, f"{where}.{i}")
    else:
        assert current == stored, where


def test_an_up_to_date_spec_is_left_as_it_is() -> None:
    current = specs.up_to_date(STORED_BEFORE)
    assert specs.up_to_date(copy.deepcopy(current)) == current


def test_a_spec_todays_rules_refuse_is_returned_unchanged() -> None:
    refused = copy.deepcopy(STORED_BEFORE)
    refused["compile"]["optimizer"] = {"name": "sgd", "learning_rate": 0.01, "momentum": 1.0}
    assert specs.up_to_date(refused) == refused


def test_the_engine_refuses_the_stored_form_itself() -> None:
    """Why the queue hands workers ``up_to_date`` specs: the engine takes the
    contract as it is and refuses a spec that lacks a key."""
    with pytest.raises(ConfigError):
        _train(STORED_BEFORE)
