"""``client/compare.py``: the spec diff and the final metrics of jobs side by side."""

from __future__ import annotations

from typing import Any

from fitq.service.client.compare import ABSENT, final_metrics, flatten, spec_differences


class TestFlatten:
    def test_dotted_paths_with_list_indices(self) -> None:
        spec = {"model": {"layers": [{"units": 8}, {"units": 3}]}, "seed": 0}
        assert flatten(spec) == {"model.layers.0.units": 8, "model.layers.1.units": 3, "seed": 0}

    def test_empty_objects_and_lists_are_leaves(self) -> None:
        assert flatten({"a": {}, "b": [], "c": None}) == {"a": {}, "b": [], "c": None}


class TestSpecDifferences:
    def test_only_the_paths_that_differ_in_first_seen_order(self) -> None:
        a = {"fit": {"epochs": 10, "batch_size": 32}, "compile": {"optimizer": {"lr": 0.001}}}
        b = {"fit": {"epochs": 10, "batch_size": 64}, "compile": {"optimizer": {"lr": 0.01}}}
        assert spec_differences([a, b]) == {
            "fit.batch_size": [32, 64],
            "compile.optimizer.lr": [0.001, 0.01],
        }

    def test_a_path_one_spec_lacks_is_absent_there(self) -> None:
        a = {"model": {"layers": [{"units": 8}, {"units": 3}]}, "fit": {"early_stopping": None}}
        b = {"model": {"layers": [{"units": 8}]}, "fit": {"early_stopping": {"patience": 3}}}
        assert spec_differences([a, b]) == {
            "model.layers.1.units": [3, ABSENT],
            "fit.early_stopping": [None, ABSENT],
            "fit.early_stopping.patience": [ABSENT, 3],
        }

    def test_values_compare_as_json(self) -> None:
        assert spec_differences([{"x": 1}, {"x": 1.0}]) == {}
        assert spec_differences([{"x": 1}, {"x": True}]) == {"x": [1, True]}
        seeds = [{"seed": 2**63 - 1}, {"seed": 2**63 - 2}]
        assert spec_differences(seeds) == {"seed": [2**63 - 1, 2**63 - 2]}

    def test_equal_specs_have_no_differences(self) -> None:
        spec = {"a": [1, {"b": 2}]}
        assert spec_differences([spec, spec, spec]) == {}


def test_final_metrics_by_name_across_jobs() -> None:
    jobs: list[dict[str, Any]] = [
        {"metrics": {"loss": 0.5, "val_loss": 0.6}, "test_metrics": {"loss": 0.7}},
        {"metrics": {"loss": 0.4}, "test_metrics": None},
        {"metrics": None},
    ]
    assert final_metrics(jobs) == {
        "loss": [0.5, 0.4, None],
        "val_loss": [0.6, None, None],
        "test loss": [0.7, None, None],
    }
