"""The training memory a job needs, estimated at submit (service/jobs/budget.py):
checked against what a real Trainer holds, and a 422 above FITQ_MAX_TRAINING_BYTES."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from fitq.service.datasets.shape import DataShape
from fitq.service.jobs import budget
from fitq.service.settings import Settings
from fitq.service.spec import parse_spec
from fitq.worker.engine import Trainer
from tests.api.conftest import Api, Stored
from tests.conftest import SPEC

HELD_TOLERANCE = 0.10
"""The estimate's held part is within 10% of the bytes of the tensors a Trainer holds."""


def dense(units: int, activation: str = "relu") -> dict[str, Any]:
    return {"type": "dense", "units": units, "activation": activation}


def held_bytes(root: object) -> int:
    """The bytes of every tensor storage reachable from ``root`` through fitq's
    objects, dicts, lists and tuples, each storage once (views share one)."""
    storages: dict[int, int] = {}
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        elif isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif type(obj).__module__.startswith("fitq.") and hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
    return sum(storages.values())


MODELS: dict[str, dict[str, Any]] = {
    "mlp, adam": {"layers": [dense(256), dense(128)]},
    "sgd, a partial last batch": {"layers": [dense(256), dense(128)], "opt": "sgd", "batch": 48},
    "activation layers": {
        "layers": [
            dense(512),
            {"type": "activation", "activation": "relu"},
            {"type": "activation", "activation": "tanh"},
        ]
    },
    "dropout, batch norm, gelu": {
        "layers": [
            dense(256),
            {"type": "dropout", "rate": 0.5},
            {"type": "batch_normalization"},
            dense(64, "gelu"),
        ]
    },
    "layer norm, rmsprop": {
        "layers": [dense(256), {"type": "layer_normalization"}, dense(64, "softmax")],
        "opt": "rmsprop",
    },
    "validation split": {"layers": [dense(256)], "split": 0.2},
    "validation set over one eval chunk": {"layers": [dense(256)], "validation_rows": 9000},
    "whole set in one batch, unshuffled": {
        "layers": [dense(128)],
        "batch": None,
        "shuffle": False,
        "opt": "sgd",
    },
    "wide data": {"layers": [dense(64)], "features": 2000, "rows": 3000},
}


def _trained(case: dict[str, Any]) -> tuple[budget.Estimate, int]:
    """(the estimate, the most bytes the Trainer held at a step boundary or at the end)."""
    n, f, k = case.get("rows", 1000), case.get("features", 20), 5
    body = {
        "model": {"input_dim": f, "layers": [*case["layers"], dense(k, "softmax")]},
        "compile": {
            "optimizer": case.get("opt", "adam"),
            "loss": "sparse_categorical_crossentropy",
        },
        "fit": {
            "epochs": 1,
            "batch_size": case.get("batch", 32),
            "validation_split": case.get("split", 0.0),
            "shuffle": case.get("shuffle", True),
        },
        "dataset_id": "d",
    }
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, f)).astype(np.float32)
    y = (np.arange(n) % k).astype(np.int64)
    shape = DataShape(n_rows=n, n_features=f, kind="classification", n_classes=k, target_dim=1)
    validation = validation_shape = None
    if "validation_rows" in case:
        nv = case["validation_rows"]
        body["validation_dataset_id"] = "v"
        validation = (rng.normal(size=(nv, f)).astype(np.float32), np.arange(nv) % k)
        validation_shape = DataShape(
            n_rows=nv, n_features=f, kind="classification", n_classes=k, target_dim=1
        )
    spec = parse_spec(body)
    normalized = spec.model_dump(mode="json")
    estimate = budget.estimate(
        normalized, spec.model.parameter_count(), shape, validation=validation_shape
    )
    trainer = Trainer(
        normalized["model"], normalized["compile"], normalized["fit"], seed=0, device="cpu"
    )
    most = 0

    def at_step(epoch: int, step: int, steps: int) -> None:
        nonlocal most
        most = max(most, held_bytes(trainer))

    trainer.fit(x, y, validation_data=validation, on_step_end=at_step)
    return estimate, max(most, held_bytes(trainer))


class TestEstimate:
    @pytest.mark.parametrize("name", list(MODELS))
    def test_the_held_part_matches_the_trainers_tensors(self, name: str) -> None:
        estimate, held = _trained(MODELS[name])
        assert held == pytest.approx(estimate.held, rel=HELD_TOLERANCE), estimate
        assert estimate.total > estimate.held

    def test_the_issues_model_needs_about_128_gb(self) -> None:
        """digits, one 1M-unit layer and 998 activation layers: 998 × 32 × 1M floats."""
        spec = parse_spec(huge_activations_spec())
        digits = DataShape(
            n_rows=1797, n_features=64, kind="classification", n_classes=10, target_dim=1
        )
        estimate = budget.estimate(
            spec.model_dump(mode="json"), spec.model.parameter_count(), digits
        )
        assert 998 * 32 * 1_000_000 * 4 < estimate.activations < 1.01 * 998 * 32 * 1_000_000 * 4
        assert 128e9 < estimate.total < 135e9


class TestAgreesWithTheEngine:
    """The budget restates a few of the engine's facts; these keep the copies equal."""

    def test_in_place_activations(self) -> None:
        from fitq.worker.engine import activations

        in_place = {name for name, cls in activations.ACTIVATIONS.items() if cls.in_place}
        assert in_place == set(budget.IN_PLACE_ACTIVATIONS)

    def test_fused_outputs(self) -> None:
        from fitq.worker.engine import compiled

        assert set(compiled.FUSABLE) == set(budget.FUSED_OUTPUTS)

    def test_evaluation_chunk(self) -> None:
        from fitq.worker.engine import model

        assert model.PREDICT_BATCH_ROWS == budget.EVAL_CHUNK_ROWS

    @pytest.mark.parametrize(
        "optimizer",
        [
            "sgd",
            {"name": "sgd", "momentum": 0.9},
            "adagrad",
            "rmsprop",
            {"name": "rmsprop", "momentum": 0.9, "centered": True},
            "adam",
            {"name": "adam", "amsgrad": True},
            "adamw",
        ],
    )
    def test_optimizer_slots(self, optimizer: Any) -> None:
        body = copy.deepcopy(SPEC)
        body["compile"]["optimizer"] = optimizer
        normalized = parse_spec(body).model_dump(mode="json")
        trainer = Trainer(normalized["model"], normalized["compile"], normalized["fit"])
        slots = len(trainer.optimizer.state.slots)
        assert budget.optimizer_slots(normalized["compile"]["optimizer"]) == slots


def huge_activations_spec() -> dict[str, Any]:
    layers = [dense(1_000_000)]
    layers += [{"type": "activation", "activation": "relu"}] * 998
    layers += [dense(10, "softmax")]
    return {
        "model": {"input_dim": 64, "layers": layers},
        "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy"},
        "fit": {"epochs": 1, "batch_size": 32},
        "dataset_id": "digits",
    }


class TestAtSubmit:
    pytestmark = pytest.mark.anyio

    async def test_the_issues_model_is_a_422_naming_estimate_and_limit(
        self, api: Api, stored: Callable[[], Stored]
    ) -> None:
        before = stored()
        r = await api.post("/v1/jobs", json=huge_activations_spec())
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert detail.startswith("training this job needs about 124 GiB (132,624,547,560 bytes")
        assert "activations kept for the backward pass: 119 GiB" in detail
        assert "over the limit of 16 GiB (17,179,869,184 bytes, FITQ_MAX_TRAINING_BYTES)" in detail
        assert r.json()["loc"] == ["body", "model", "layers"]
        assert stored() == before


class TestAtSubmitWithALowerLimit:
    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"max_training_bytes": 1_000_000})

    async def test_the_limit_is_the_setting(self, api: Api) -> None:
        small = copy.deepcopy(SPEC)
        assert (await api.post("/v1/jobs", json=small)).status_code == 201
        wide = copy.deepcopy(SPEC)
        wide["model"]["layers"][0]["units"] = 20_000  # 20,000 × 4 inputs, Adam: ~1.6 MB
        r = await api.post("/v1/jobs", json=wide)
        assert r.status_code == 422, r.text
        assert (
            "over the limit of 977 KiB (1,000,000 bytes, FITQ_MAX_TRAINING_BYTES)"
            in (r.json()["detail"])
        )
