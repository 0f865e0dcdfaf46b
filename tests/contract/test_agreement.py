"""The spec and the engine agree, part by part: the same keys, the same bounds, the same
rules across fields. The engine reads the normalized spec as it is: a key missing or
unknown anywhere in it is a ConfigError, never a default or a dropped key."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import pytest
from pydantic import BaseModel

from fitq.service.errors import InvalidSpec
from fitq.service.spec import CompileSpec, EarlyStopping, FitSpec, ModelSpec, parse_spec
from fitq.service.spec.callbacks import ReduceLROnPlateau
from fitq.service.spec.constraints import CONSTRAINT_CLASSES
from fitq.service.spec.initializers import INITIALIZER_CLASSES
from fitq.service.spec.layers import LAYER_CLASSES, Regularizer
from fitq.service.spec.losses import LOSS_CLASSES
from fitq.service.spec.optimizers import OPTIMIZER_CLASSES
from fitq.service.spec.schedules import SCHEDULE_CLASSES
from fitq.worker.engine import (
    ConfigError,
    Trainer,
    callbacks,
    compiled,
    constraints,
    initializers,
    inputs,
    layers,
    losses,
    optimizers,
)
from fitq.worker.engine import model as engine_model
from fitq.worker.engine.config import bounds_of
from fitq.worker.engine.optimizers import schedules
from tests.contract.cases import bounds, dense, job

# (what, the spec's model, the engine's config class) for every part the engine reads
PAIRS: list[tuple[str, type[BaseModel], type]] = [
    *[(f"optimizer {n}", m, optimizers.CONFIGS[n]) for n, m in OPTIMIZER_CLASSES.items()],
    *[(f"schedule {n}", m, schedules.CLASSES[n]) for n, m in SCHEDULE_CLASSES.items()],
    *[(f"initializer {n}", m, initializers.PARAMETERS[n]) for n, m in INITIALIZER_CLASSES.items()],
    *[(f"loss {n}", m, losses.PARAMETERS[n]) for n, m in LOSS_CLASSES.items()],
    *[(f"layer {n}", m, layers.CONFIGS[n]) for n, m in LAYER_CLASSES.items()],
    *[(f"constraint {n}", m, constraints.PARAMETERS[n]) for n, m in CONSTRAINT_CLASSES.items()],
    ("regularizer", Regularizer, layers.RegularizerConfig),
    ("model", ModelSpec, engine_model.ModelConfig),
    ("compile", CompileSpec, compiled.CompileConfig),
    ("fit", FitSpec, inputs.FitConfig),
    ("early_stopping", EarlyStopping, callbacks.EarlyStopping),
    ("reduce_lr_on_plateau", ReduceLROnPlateau, callbacks.ReduceLROnPlateau),
]
IDS = [what for what, _, _ in PAIRS]


def _engine_keys(cls: type) -> list[str]:
    return [f.name for f in fields(cls) if f.init]


class TestTheSameParts:
    def test_every_kind_the_engine_knows_the_spec_accepts(self) -> None:
        assert set(optimizers.CONFIGS) == set(OPTIMIZER_CLASSES)
        assert set(schedules.CLASSES) == set(SCHEDULE_CLASSES)
        assert set(initializers.PARAMETERS) == set(INITIALIZER_CLASSES)
        assert set(losses.PARAMETERS) == set(LOSS_CLASSES)
        assert set(layers.CONFIGS) == set(LAYER_CLASSES)

    @pytest.mark.parametrize(("what", "spec", "engine"), PAIRS, ids=IDS)
    def test_the_same_keys(self, what: str, spec: type[BaseModel], engine: type) -> None:
        spec_keys = [k for k in spec.model_fields if k not in ("name", "type", "schedule")]
        assert sorted(spec_keys) == sorted(_engine_keys(engine))

    @pytest.mark.parametrize(("what", "spec", "engine"), PAIRS, ids=IDS)
    def test_every_engine_bound_is_the_specs(
        self, what: str, spec: type[BaseModel], engine: type
    ) -> None:
        """So what the engine's arithmetic refuses is a 422 at submit, never a failed job."""
        for name, engine_bounds in bounds_of(engine).items():
            low, low_open, high, high_open = bounds(spec, name)
            assert (low, low_open) == engine_bounds.low, f"{what}.{name}: lower bound"
            if engine_bounds.real:  # a count's upper limit is the service's (memory, time)
                assert (high, high_open) == engine_bounds.high, f"{what}.{name}: upper bound"

    def test_the_engine_declares_its_bounds(self) -> None:
        """The comparison above is not vacuous: the bounds the engine's math needs."""
        assert bounds_of(optimizers.SGDConfig)["momentum"].high == (1.0, True)
        assert set(bounds_of(layers.DenseConfig)) == {"units"}


# Rules across fields: each refused by the spec (a 422 naming the field) and by the engine.
RULES = [
    (
        "nesterov without momentum",
        job(optimizer={"name": "sgd", "nesterov": True}),
        ["compile", "optimizer", "nesterov"],
        "nesterov needs momentum > 0",
    ),
    (
        "uniform range reversed",
        job([dense(kernel_initializer={"name": "random_uniform", "minval": 1.0, "maxval": 0.0})]),
        ["model", "layers", 0, "kernel_initializer", "maxval"],
        "maxval must be >= minval",
    ),
    (
        "uniform range wider than float32",
        job(
            [
                dense(
                    kernel_initializer={
                        "name": "random_uniform",
                        "minval": -3e38,
                        "maxval": 3e38,
                    }
                )
            ]
        ),
        ["model", "layers", 0, "kernel_initializer", "maxval"],
        "maxval - minval must be <=",
    ),
    (
        "two gradient clips",
        job(optimizer={"name": "adam", "clipnorm": 1.0, "clipvalue": 0.5}),
        ["compile", "optimizer", "clipvalue"],
        "at most one of clipnorm, clipvalue, global_clipnorm",
    ),
]

# Schedules as normalized (every key), for the rules below.
COSINE = {"schedule": "cosine_decay", "initial_learning_rate": 0.1, "decay_steps": 10.0,
          "alpha": 0.0, "warmup_target": None, "warmup_steps": 0.0}  # fmt: skip
EXPONENTIAL = {"schedule": "exponential_decay", "initial_learning_rate": 0.1,
               "decay_steps": 10.0, "decay_rate": 0.5, "staircase": False}  # fmt: skip
PIECEWISE = {"schedule": "piecewise_constant_decay", "boundaries": [10.0, 20.0],
             "values": [0.1, 0.01, 0.001]}  # fmt: skip
LEARNING_RATE = ("compile", "optimizer", "learning_rate")
WITH_PLATEAU = {"validation_split": 0.25, "reduce_lr_on_plateau": {}}

# Rules whose field cannot simply be left out: (id, a body that breaks the rule, the 422's
# loc, the engine's words, a valid body, and where its stored spec is then set to what?)
SET_RULES = [
    (
        "ftrl with a schedule that reaches 0",
        job(optimizer={"name": "ftrl", "learning_rate": COSINE}),
        [*LEARNING_RATE],
        "ftrl divides by the learning rate",
        job(optimizer={"name": "ftrl"}),
        (LEARNING_RATE, COSINE),
    ),
    (
        "piecewise values not one more than boundaries",
        job(optimizer={"name": "sgd", "learning_rate": {**PIECEWISE, "values": [0.1, 0.01]}}),
        [*LEARNING_RATE, "values"],
        "one more entry than boundaries",
        job(optimizer={"name": "sgd", "learning_rate": PIECEWISE}),
        ((*LEARNING_RATE, "values"), [0.1, 0.01]),
    ),
    (
        "piecewise boundaries not increasing",
        job(optimizer={"name": "sgd", "learning_rate": {**PIECEWISE, "boundaries": [20, 10]}}),
        [*LEARNING_RATE, "boundaries"],
        "strictly increasing",
        job(optimizer={"name": "sgd", "learning_rate": PIECEWISE}),
        ((*LEARNING_RATE, "boundaries"), [20.0, 10.0]),
    ),
    (
        "a piecewise rate below 0",
        job(optimizer={"name": "sgd", "learning_rate": {**PIECEWISE, "values": [0.1, -1, 0]}}),
        [*LEARNING_RATE, "values", 1],
        "values must be numbers >= 0",
        job(optimizer={"name": "sgd", "learning_rate": PIECEWISE}),
        ((*LEARNING_RATE, "values"), [0.1, -1.0, 0.0]),
    ),
    (
        "min_max_norm's range reversed",
        job([dense(kernel_constraint={"name": "min_max_norm", "min_value": 2.0})]),
        ["model", "layers", 0, "kernel_constraint", "max_value"],
        "max_value must be >= min_value",
        job([dense(kernel_constraint={"name": "min_max_norm"})]),
        (("model", "layers", 0, "kernel_constraint", "min_value"), 2.0),
    ),
    (
        "a bias constraint on a second axis",
        job([dense(bias_constraint={"name": "unit_norm", "axis": 1})]),
        ["model", "layers", 0, "bias_constraint", "axis"],
        "a bias has axis 0 only",
        job([dense(bias_constraint="unit_norm")]),
        (("model", "layers", 0, "bias_constraint", "axis"), 1),
    ),
    (
        "an input_shape of another size than input_dim",
        {**job(), "model": {**job()["model"], "input_shape": [2, 2]}},
        ["model", "input_shape"],
        "whose product is input_dim",
        job(),
        (("model", "input_shape"), [2, 2]),
    ),
    (
        "normalization statistics for another width",
        job([dense(), {"type": "normalization", "mean": [0, 0], "variance": [1, 1]}]),
        ["model", "layers", 1, "mean"],
        "need one value per feature",
        job([dense(), {"type": "normalization", "mean": 0.0, "variance": 1.0}]),
        (
            ("model", "layers", 1),
            {"type": "normalization", "mean": [0.0] * 2, "variance": [1.0] * 2, "invert": False},
        ),
    ),
    (
        "a variance below 0",
        job([dense(), {"type": "normalization", "mean": [0] * 4, "variance": [1, -1, 1, 1]}]),
        ["model", "layers", 1, "variance", 1],
        "each variance must be a number >= 0",
        job([dense(), {"type": "normalization", "mean": 0.0, "variance": 1.0}]),
        (("model", "layers", 1, "variance"), [1.0, -1.0, 1.0, 1.0]),
    ),
    (
        "reduce_lr_on_plateau with a schedule",
        job(optimizer={"name": "sgd", "learning_rate": EXPONENTIAL}, fit=WITH_PLATEAU),
        ["fit", "reduce_lr_on_plateau"],
        "the learning rate follows a schedule",
        job(optimizer="sgd", fit=WITH_PLATEAU),
        (LEARNING_RATE, EXPONENTIAL),
    ),
]


def _bypassing_the_spec(body: dict[str, Any], loc: list[str | int]) -> dict[str, Any]:
    """The normalized spec of a body that breaks one rule: normalized with the rule's field
    at an allowed value, then set as the body had it (what a drifted service would store)."""
    allowed = copy.deepcopy(body)
    node, original = allowed, body
    for key in loc[:-1]:
        node, original = node[key], original[key]
    node.pop(loc[-1])
    if loc[-1] == "maxval":  # the engine's check needs both ends of the range
        node.pop("minval")
    stored = parse_spec(allowed).model_dump(mode="json")
    target = stored
    for key in loc[:-1]:
        target = target[key]
    target.update({k: original[k] for k in ("minval", "maxval", loc[-1]) if k in original})
    return stored


class TestTheSameRules:
    @pytest.mark.parametrize(
        ("body", "loc", "engine_words"),
        [r[1:] for r in RULES],
        ids=[r[0] for r in RULES],
    )
    def test_refused_at_submit_and_by_the_engine(
        self, body: dict[str, Any], loc: list[str | int], engine_words: str
    ) -> None:
        with pytest.raises(InvalidSpec) as info:
            parse_spec(body)
        assert info.value.loc == ["body", *loc]
        stored = _bypassing_the_spec(body, loc)
        with pytest.raises(ConfigError, match=engine_words):
            Trainer(stored["model"], stored["compile"], stored["fit"], stored["seed"], "cpu")

    @pytest.mark.parametrize(
        ("body", "loc", "engine_words", "valid", "change"),
        [r[1:] for r in SET_RULES],
        ids=[r[0] for r in SET_RULES],
    )
    def test_refused_at_submit_and_by_the_engine_when_set(
        self,
        body: dict[str, Any],
        loc: list[str | int],
        engine_words: str,
        valid: dict[str, Any],
        change: tuple[tuple[str, ...], Any],
    ) -> None:
        with pytest.raises(InvalidSpec) as info:
            parse_spec(body)
        assert info.value.loc == ["body", *loc]
        stored = parse_spec(valid).model_dump(mode="json")
        path, value = change
        _at(stored, path[:-1])[path[-1]] = copy.deepcopy(value)
        with pytest.raises(ConfigError, match=engine_words):
            Trainer(stored["model"], stored["compile"], stored["fit"], stored["seed"], "cpu")

    def test_no_layers_is_refused_by_both(self) -> None:
        body = job()
        body["model"]["layers"] = []
        with pytest.raises(InvalidSpec):
            parse_spec(body)
        stored = parse_spec(job()).model_dump(mode="json")
        with pytest.raises(ConfigError, match="layers must not be empty"):
            Trainer({**stored["model"], "layers": []}, stored["compile"], stored["fit"], 0, "cpu")


# ---------------------------------------------------------------- keys, as they are

# One job that has every kind of object the engine reads, with parameters.
EVERY_PART = job(
    [
        dense(
            activation="tanh",
            kernel_initializer={"name": "random_uniform"},
            bias_initializer={"name": "constant", "value": 0.1},
            kernel_regularizer={"l1": 0.01},
        ),
        dense(kernel_initializer="truncated_normal", bias_initializer="random_normal"),
        {"type": "dropout", "rate": 0.1},
        {"type": "batch_normalization"},
        {"type": "layer_normalization"},
        {"type": "activation", "activation": "relu"},
        dense(kernel_constraint={"name": "min_max_norm"}, bias_constraint="max_norm"),
        {"type": "prelu", "alpha_initializer": {"name": "random_uniform"}},
        {"type": "relu", "max_value": 6.0},
        {"type": "leaky_relu"},
        {"type": "elu"},
        {"type": "flatten"},
        {"type": "rescaling", "scale": 2.0},
        {"type": "normalization", "mean": 0.5, "variance": 2.0},
        {"type": "gaussian_noise", "stddev": 0.1},
        {"type": "gaussian_dropout", "rate": 0.1},
        {"type": "alpha_dropout", "rate": 0.1},
        {"type": "activity_regularization", "l2": 0.01},
    ],
    optimizer={"name": "adam", "learning_rate": PIECEWISE, "global_clipnorm": 1.0},
    loss={"name": "huber"},
    fit={"validation_split": 0.25, "early_stopping": {"monitor": "val_loss"}},
)
# ... and what cannot share a job with it (a constant learning rate ReduceLROnPlateau sets)
PLATEAU = job(optimizer="ftrl", fit=WITH_PLATEAU)


def _objects(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], dict]]:
    """Every JSON object in the stored spec's model, compile and fit, with its path."""
    if isinstance(node, dict):
        if path:
            yield path, node
        for key, value in node.items():
            if not path and key not in ("model", "compile", "fit"):
                continue
            yield from _objects(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _objects(value, (*path, i))


def _build(stored: dict[str, Any]) -> Trainer:
    return Trainer(stored["model"], stored["compile"], stored["fit"], stored["seed"], "cpu")


def _at(stored: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    node: Any = stored
    for key in path:
        node = node[key]
    return node


STORED = {
    name: parse_spec(body).model_dump(mode="json")
    for name, body in (
        ("every_part", EVERY_PART),
        ("plateau", PLATEAU),
        ("binary_focal", job(loss="binary_focal_crossentropy", metrics=["auc", "precision"])),
        ("categorical_focal", job(loss="categorical_focal_crossentropy")),
        ("smoothed", job(loss={"name": "categorical_crossentropy", "label_smoothing": 0.1})),
    )
}
OBJECTS = [(name, path) for name, spec in STORED.items() for path, _ in _objects(spec)]
KEYS = [
    (name, path, key) for name, spec in STORED.items() for path, node in _objects(spec)
    for key in node
]  # fmt: skip


class TestAsItIs:
    @pytest.mark.parametrize("name", sorted(STORED))
    def test_the_stored_spec_builds(self, name: str) -> None:
        _build(copy.deepcopy(STORED[name]))

    @pytest.mark.parametrize(
        ("name", "path"), OBJECTS, ids=[f"{n}:{'.'.join(map(str, p))}" for n, p in OBJECTS]
    )
    def test_an_unknown_key_is_refused(self, name: str, path: tuple[Any, ...]) -> None:
        stored = copy.deepcopy(STORED[name])
        _at(stored, path)["surprise"] = 1
        with pytest.raises(ConfigError, match="unknown surprise"):
            _build(stored)

    @pytest.mark.parametrize(
        ("name", "path", "key"),
        KEYS,
        ids=[f"{n}:{'.'.join(map(str, (*p, k)))}" for n, p, k in KEYS],
    )
    def test_a_missing_key_is_refused(self, name: str, path: tuple[Any, ...], key: str) -> None:
        stored = copy.deepcopy(STORED[name])
        del _at(stored, path)[key]
        with pytest.raises(ConfigError):
            _build(stored)
