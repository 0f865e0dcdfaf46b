"""A sweep's plan, without a database: trials, their specs, ASHA's rule, the ranking."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from fitq.service.errors import InvalidInput, InvalidSpec
from fitq.service.sweeps import asha, expand, ranking, request
from fitq.service.sweeps.request import SweepCreate

BASE: dict[str, Any] = {
    "model": {"input_dim": 4, "layers": [{"type": "dense", "units": 8}]},
    "compile": {"optimizer": "adam", "loss": "mse"},
    "seed": 0,
}


def _request(**overrides: Any) -> SweepCreate:
    body = {"spec": BASE, "parameters": {"seed": {"values": [0, 1]}}, **overrides}
    return SweepCreate.model_validate(body)


class TestCombinations:
    def test_grid_is_every_combination_in_order(self) -> None:
        request = _request(
            parameters={
                "compile.optimizer.learning_rate": {"values": [0.001, 0.01]},
                "seed": {"values": [0, 1, 2]},
            }
        )
        combos = expand.combinations(request)
        assert len(combos) == 6
        assert combos[0] == {"compile.optimizer.learning_rate": 0.001, "seed": 0}
        assert combos[-1] == {"compile.optimizer.learning_rate": 0.01, "seed": 2}

    def test_random_draws_max_trials_within_bounds_and_repeats_with_its_seed(self) -> None:
        body = {
            "method": "random",
            "max_trials": 25,
            "seed": 7,
            "parameters": {
                "compile.optimizer.learning_rate": {
                    "distribution": "log_uniform",
                    "min": 1e-4,
                    "max": 1e-1,
                },
                "model.layers.0.units": {"distribution": "int_uniform", "min": 4, "max": 9},
                "seed": {"values": [3, 4]},
            },
        }
        first, again = expand.combinations(_request(**body)), expand.combinations(_request(**body))
        assert first == again and len(first) == 25
        assert all(1e-4 <= c["compile.optimizer.learning_rate"] <= 1e-1 for c in first)
        assert {c["model.layers.0.units"] for c in first} <= set(range(4, 10))
        assert {c["seed"] for c in first} == {3, 4}

    def test_a_grid_over_the_limit_is_refused(self) -> None:
        values = {"values": list(range(40))}
        request = _request(parameters={"seed": values, "priority": values})
        with pytest.raises(InvalidSpec, match="1600 combinations"):
            expand.combinations(request)

    @pytest.mark.parametrize(
        "body, message",
        [
            ({"parameters": {"seed": {"distribution": "uniform", "min": 0, "max": 1}}}, "grid"),
            ({"method": "random", "parameters": {"seed": {"values": [1]}}}, "max_trials"),
            (
                {
                    "method": "random",
                    "max_trials": 2,
                    "parameters": {"x": {"distribution": "log_uniform", "min": 0, "max": 1}},
                },
                "min > 0",
            ),
            ({"parameters": {"a..b": {"values": [1]}}}, "pattern"),
        ],
    )
    def test_bad_requests_are_refused(self, body: dict[str, Any], message: str) -> None:
        with pytest.raises(ValidationError, match=message):
            _request(**body)

    def test_a_range_upside_down_is_one_error_that_says_so(self) -> None:
        body = {
            "spec": {"model": {}},
            "method": "random",
            "max_trials": 2,
            "parameters": {"x": {"distribution": "uniform", "min": 2, "max": 1}},
            "metric": {"name": "val_loss"},
        }
        with pytest.raises(InvalidInput) as refused:
            request.parse(body)
        assert str(refused.value) == "parameters.x: min must be < max (got 2.0 and 1.0)"
        assert refused.value.loc == ["body", "parameters", "x"]


class TestApply:
    def test_sets_nested_paths_and_list_indices(self) -> None:
        spec = expand.apply(BASE, {"model.layers.0.units": 32, "fit.epochs": 3})
        assert spec["model"]["layers"][0]["units"] == 32
        assert spec["fit"] == {"epochs": 3}
        assert BASE["model"]["layers"][0]["units"] == 8  # the base is not changed

    def test_a_bare_optimizer_name_is_read_as_an_object(self) -> None:
        spec = expand.apply(BASE, {"compile.optimizer.learning_rate": 0.1})
        assert spec["compile"]["optimizer"] == {"name": "adam", "learning_rate": 0.1}

    def test_an_index_past_the_list_names_the_parameter(self) -> None:
        with pytest.raises(InvalidSpec, match="model.layers.3.units") as caught:
            expand.apply(BASE, {"model.layers.3.units": 4})
        assert caught.value.loc == ["body", "parameters", "model.layers.3.units"]


class TestTrialSpecs:
    def test_one_bad_combination_refuses_the_sweep_naming_its_values(self) -> None:
        def validate(spec: dict[str, Any]) -> None:
            if spec["compile"]["optimizer"]["learning_rate"] <= 0:
                raise InvalidSpec(
                    "compile.optimizer.learning_rate: must be > 0",
                    loc=["body", "compile", "optimizer", "learning_rate"],
                )

        request = _request(parameters={"compile.optimizer.learning_rate": {"values": [0.1, -1]}})
        with pytest.raises(InvalidSpec, match=r"learning_rate=-1") as caught:
            expand.trial_specs(request, validate)
        assert caught.value.loc == ["body", "spec", "compile", "optimizer", "learning_rate"]

    def test_every_trial_carries_its_params_and_spec(self) -> None:
        trials = expand.trial_specs(_request(), lambda spec: None)
        assert [t.params for t in trials] == [{"seed": 0}, {"seed": 1}]
        assert [t.spec["seed"] for t in trials] == [0, 1]


class TestAsha:
    def test_rungs_grow_by_the_reduction_factor_below_the_last_epoch(self) -> None:
        assert asha.rungs(2, 3, 20) == [2, 6, 18]
        assert asha.rungs(1, 2, 1) == []

    def test_a_trial_alone_at_a_rung_goes_on(self) -> None:
        assert asha.keeps_going(5.0, [5.0], 3, maximize=False)

    def test_only_the_best_third_goes_on(self) -> None:
        recorded = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
        going = [v for v in recorded if asha.keeps_going(v, recorded, 3, maximize=False)]
        assert going == [0.1, 0.2]
        going = [v for v in recorded if asha.keeps_going(v, recorded, 3, maximize=True)]
        assert going == [0.5, 0.6]

    def test_nan_stops(self) -> None:
        assert not asha.keeps_going(math.nan, [math.nan, 1.0], 3, maximize=False)


class TestRanking:
    HISTORY = [{"val_loss": 0.5}, {"val_loss": 0.3}, {"val_loss": 0.4}]

    def test_the_value_is_the_best_epoch_not_the_last(self) -> None:
        assert ranking.trial_value(self.HISTORY, "val_loss", maximize=False) == 0.3
        assert ranking.trial_value(self.HISTORY, "val_loss", maximize=True) == 0.5
        assert ranking.trial_value([{"loss": math.nan}], "loss", maximize=False) is None

    def test_best_first_and_unranked_last(self) -> None:
        values = {"a": 0.3, "b": None, "c": 0.1, "d": 0.2}
        order = ranking.ranked(list(values), values.get, maximize=False)
        assert order == ["c", "d", "a", "b"]
