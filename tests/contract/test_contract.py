"""Every spec the API accepts, the engine builds and trains (docs/spec-contract.md).

A spec goes the way a job goes: ``parse_spec`` (the 422 of ``POST /v1/jobs``), the check
against its dataset's shape, ``model_dump(mode="json")`` (what is stored), then the
engine's ``Trainer`` on that dict as it is, for one epoch of a tiny random dataset. It
may fail only for the numbers' sake (a loss that overflows to Inf/NaN, a float32
overflow inside a step), never with a ConfigError or a DataError: those would mean the
service accepted what the engine cannot run.
"""

from __future__ import annotations

import re
from typing import Any, get_args

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, reject, settings

from fitq.service.datasets.shape import DataShape
from fitq.service.errors import InvalidSpec
from fitq.service.spec import CROSS_ENTROPIES, JobSpec, check_against_data, parse_spec
from fitq.service.spec.losses import BINARY_LOSSES, CLASSIFICATION_LOSSES
from fitq.service.spec.metrics import MetricName
from fitq.worker.engine import ConfigError, DataError, Trainer, TrainingError
from tests.contract.cases import bound_cases, job, jobs, metrics_for

ROWS = 8
# What the numbers alone may do to a valid spec: overflow the loss, or a float32 scalar.
NUMERIC_FAILURE = re.compile(r"loss is (nan|inf|-inf) at epoch|without overflow")
BOUND_CASES = bound_cases()

devices = ["cpu"] + (
    [pytest.param("cuda", marks=pytest.mark.cuda)] if torch.cuda.is_available() else []
)


class _OneEpoch(Exception):
    """Raised at the first epoch's end: one epoch is enough (epochs may be 10,000)."""


def _shape(spec: JobSpec) -> DataShape:
    units, loss = spec.model.output_units, spec.compile.loss.name
    if loss in CLASSIFICATION_LOSSES:
        classes = 2 if loss in BINARY_LOSSES else units
        return DataShape(ROWS, spec.model.input_dim, "classification", classes)
    return DataShape(ROWS, spec.model.input_dim, "regression", None, target_dim=units)


def _data(spec: JobSpec) -> tuple[np.ndarray, np.ndarray]:
    """Random features; labels that use every class (or random targets)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, spec.model.input_dim)).astype(np.float32)
    shape = _shape(spec)
    if shape.kind == "classification":
        assert shape.n_classes is not None
        return x, np.arange(ROWS, dtype=np.int64) % shape.n_classes
    return x, rng.normal(size=(ROWS, shape.target_dim)).astype(np.float32).squeeze(1)


def accepted(body: dict[str, Any]) -> JobSpec | None:
    """The spec as the API accepts it for a dataset of ROWS rows (None: a 422 there)."""
    spec = parse_spec(body)
    try:
        check_against_data(spec, _shape(spec))
    except InvalidSpec:
        return None
    return spec


def trains(spec: JobSpec, device: str = "cpu") -> None:
    """The engine builds the stored spec as it is and trains one epoch."""
    stored = spec.model_dump(mode="json")
    x, y = _data(spec)
    trainer = Trainer(
        model=stored["model"],
        compile=stored["compile"],
        fit=stored["fit"],
        seed=stored["seed"],
        device=device,
    )

    def one_epoch(epoch: int, logs: dict[str, float]) -> None:
        raise _OneEpoch

    try:
        trainer.fit(x, y, on_epoch_end=one_epoch)
    except _OneEpoch:
        assert trainer.epoch == 1
    except (ConfigError, DataError):
        raise
    except TrainingError as e:
        assert NUMERIC_FAILURE.search(e.message), e.message


class TestAtTheBounds:
    @pytest.mark.parametrize("device", devices)
    @pytest.mark.parametrize(
        "body", [b for _, b in BOUND_CASES], ids=[name for name, _ in BOUND_CASES]
    )
    def test_every_part_at_its_bounds_trains(self, body: dict[str, Any], device: str) -> None:
        spec = accepted(body)  # a value at its bound is a valid value: never a 422 here
        if spec is not None:  # None: refused for this dataset (a split that leaves no row)
            trains(spec, device)

    def test_the_cases_reach_every_part_the_spec_accepts(self) -> None:
        ids = " ".join(name for name, _ in BOUND_CASES)
        metrics = {m for loss in CROSS_ENTROPIES + ("huber",) for m in metrics_for(loss)}
        assert metrics == set(get_args(MetricName))
        parts = ("optimizer", "schedule", "reduce_lr", "initializer", "regularizer", "activation",
                 "layer", "loss")  # fmt: skip
        for part in parts:
            assert f"{part} " in ids

    def test_sgd_momentum_1_is_refused_at_submit_with_its_location(self) -> None:
        """The bug that started issue #11: accepted (201), then refused by the engine."""
        with pytest.raises(InvalidSpec) as info:
            parse_spec(job(optimizer={"name": "sgd", "momentum": 1.0}))
        assert info.value.loc == ["body", "compile", "optimizer", "momentum"]


class TestGenerated:
    @settings(
        max_examples=100,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(jobs())
    def test_any_accepted_spec_trains(self, body: dict[str, Any]) -> None:
        try:
            spec = accepted(body)
        except InvalidSpec:
            reject()  # a rule across fields (nesterov without momentum, …): not accepted
        if spec is None:
            reject()
        trains(spec)


class TestNormalizedAgain:
    def test_a_stored_spec_normalizes_to_itself(self) -> None:
        """So re-normalizing what is stored (after the spec gains a key, say) is safe: it
        fills the new key's default and changes nothing else."""
        for name, body in BOUND_CASES:
            stored = parse_spec(body).model_dump(mode="json")
            assert parse_spec(stored).model_dump(mode="json") == stored, name
