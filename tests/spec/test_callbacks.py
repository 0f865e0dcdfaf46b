"""service/spec/callbacks.py: EarlyStopping's every argument, ReduceLROnPlateau, a Keras-like
``fit.callbacks`` list folded into fitq's keys, TerminateOnNaN accepted, and the checks
across the job (a monitor that is logged, no plateau callback over a schedule)."""

from __future__ import annotations

from typing import Any

import pytest

from fitq.service.spec import parse_spec
from tests.spec.conftest import refused, spec_dict

EARLY_STOPPING = {
    "monitor": "val_loss", "min_delta": 0.0, "patience": 0, "mode": "auto", "baseline": None,
    "restore_best_weights": False, "start_from_epoch": 0,
}  # fmt: skip
PLATEAU = {
    "monitor": "val_loss", "factor": 0.1, "patience": 10, "mode": "auto", "min_delta": 0.0001,
    "cooldown": 0, "min_lr": 0.0,
}  # fmt: skip


def fitted(**fit: Any) -> dict[str, Any]:
    body = spec_dict(fit={"validation_split": 0.1, **fit})
    result: dict[str, Any] = parse_spec(body).model_dump(mode="json")["fit"]
    return result


class TestNormalized:
    def test_keras_defaults(self) -> None:
        fit = fitted(early_stopping={}, reduce_lr_on_plateau={})
        assert fit["early_stopping"] == EARLY_STOPPING
        assert fit["reduce_lr_on_plateau"] == PLATEAU

    def test_none_by_default(self) -> None:
        fit = fitted()
        assert fit["early_stopping"] is None and fit["reduce_lr_on_plateau"] is None
        assert "callbacks" not in fit

    def test_early_stoppings_full_set_and_verbose_ignored(self) -> None:
        given = {"monitor": "val_acc", "baseline": 0.9, "start_from_epoch": 3, "verbose": 1,
                 "min_delta": -0.01, "mode": "max", "restore_best_weights": True}  # fmt: skip
        fit = fitted(early_stopping=given)
        assert fit["early_stopping"] == {
            **EARLY_STOPPING, "monitor": "val_accuracy", "baseline": 0.9, "start_from_epoch": 3,
            "min_delta": 0.01, "mode": "max", "restore_best_weights": True,
        }  # fmt: skip


class TestTheCallbacksList:
    def test_folds_into_the_keys_in_either_form(self) -> None:
        fit = fitted(
            callbacks=[
                {"type": "reduce_lr_on_plateau", "patience": 3, "factor": 0.5},
                {"class_name": "EarlyStopping", "config": {"patience": 5, "verbose": 0}},
                {"type": "TerminateOnNaN"},
                {"module": "keras.callbacks", "class_name": "TerminateOnNaN",
                 "config": {"raise_error": True}, "registered_name": None},
                {"class_name": "History", "config": {}},
            ]
        )  # fmt: skip
        assert fit["early_stopping"] == {**EARLY_STOPPING, "patience": 5}
        assert fit["reduce_lr_on_plateau"] == {**PLATEAU, "patience": 3, "factor": 0.5}
        assert "callbacks" not in fit

    def test_an_empty_list_is_no_callbacks(self) -> None:
        assert fitted(callbacks=[]) == fitted()

    @pytest.mark.parametrize(
        ("fit", "loc", "words"),
        [
            ({"callbacks": [{"type": "early_stopping"}, {"type": "early_stopping"}]},
             ["callbacks", 1], "early_stopping is given twice"),
            ({"early_stopping": {}, "callbacks": [{"class_name": "EarlyStopping", "config": {}}]},
             ["callbacks", 0], "given twice"),
            ({"callbacks": [{"type": "model_checkpoint"}]}, ["callbacks", 0],
             "unknown callback 'model_checkpoint'"),
            ({"callbacks": [{"class_name": "CSVLogger", "config": {"filename": "x"}}]},
             ["callbacks", 0], "unknown callback 'CSVLogger'"),
            ({"callbacks": ["early_stopping"]}, ["callbacks", 0], "an object with a 'type'"),
            ({"callbacks": {"type": "early_stopping"}}, ["callbacks"], "must be a list"),
            ({"callbacks": [{"type": "reduce_lr_on_plateau", "factor": 1.0}]},
             ["reduce_lr_on_plateau", "factor"], "< 1"),
            ({"callbacks": [{"type": "terminate_on_nan", "raise_error": "yes"}]},
             ["callbacks", 0, "raise_error"], "must be true or false"),
        ],
    )  # fmt: skip
    def test_refused_naming_the_entry(
        self, fit: dict[str, Any], loc: list[Any], words: str
    ) -> None:
        error = refused(spec_dict(fit={"validation_split": 0.1, **fit}))
        assert error.loc == ["body", "fit", *loc]
        assert words in error.message


class TestAcrossTheJob:
    def test_the_plateau_monitor_must_be_logged(self) -> None:
        error = refused(spec_dict(fit={"reduce_lr_on_plateau": {"monitor": "val_loss"}}))
        assert error.loc == ["body", "fit", "reduce_lr_on_plateau", "monitor"]
        assert "needs validation data" in error.message

    def test_no_plateau_callback_over_a_schedule(self) -> None:
        rate = {"schedule": "exponential_decay", "initial_learning_rate": 0.1,
                "decay_steps": 10, "decay_rate": 0.5}  # fmt: skip
        body = spec_dict(
            compile={"optimizer": {"name": "adam", "learning_rate": rate}, "loss": "mse"},
            fit={"validation_split": 0.1, "reduce_lr_on_plateau": {}},
        )
        error = refused(body)
        assert error.loc == ["body", "fit", "reduce_lr_on_plateau"]
        assert "follows a schedule" in error.message


class TestRefusedCallbacks:
    """docs/keras.md's refused rows: each a 422 naming the callback."""

    @pytest.mark.parametrize(
        "class_name",
        ["ModelCheckpoint", "BackupAndRestore", "CSVLogger", "TensorBoard", "ProgbarLogger",
         "RemoteMonitor", "LearningRateScheduler", "LambdaCallback", "SwapEMAWeights",
         "OrbaxCheckpoint"],
    )  # fmt: skip
    def test_refused_by_name(self, class_name: str) -> None:
        entry = {"module": "keras.callbacks", "class_name": class_name, "config": {}}
        error = refused(spec_dict(fit={"callbacks": [entry]}))
        assert error.loc == ["body", "fit", "callbacks", 0]
        assert f"unknown callback '{class_name}'" in error.message
