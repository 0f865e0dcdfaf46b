"""EarlyStopping and ReduceLROnPlateau decide as Keras' own callbacks do, epoch for epoch
(the same logs fed to both); in a fit they stop it and lower its learning rate; schedules
set each step's rate; a run with any of them resumes bit for bit."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from fitq.worker.engine import Trainer, TrainingError
from fitq.worker.engine.callbacks import EarlyStopping, ReduceLROnPlateau
from fitq.worker.engine.optimizers import Optimizer, make_config
from fitq.worker.engine.pack.compat import compatibility_key
from tests.engine.helpers import (
    assert_weights_equal,
    blobs,
    dense,
    normalized,
    spec,
    weights,
    without_timing,
)
from tests.support.keras_reference import keras_on_torch


@pytest.fixture(scope="module")
def keras(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    with keras_on_torch(tmp_path_factory) as module:
        yield module


def _losses(seed: int, epochs: int = 40) -> list[float]:
    """A falling, noisy, plateauing loss curve: improvements, stalls and small gains."""
    rng = np.random.default_rng(seed)
    curve = 1.0 / (1 + 0.3 * np.arange(epochs)) + rng.normal(0, 0.02, epochs)
    curve[epochs // 2 :] = curve[epochs // 2] + rng.normal(0, 0.005, epochs - epochs // 2)
    return [float(v) for v in curve]


def _keras_host(keras: ModuleType, lr: float) -> Any:
    """A compiled Keras model for a callback to act on (its optimizer's rate, stop flag)."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")
    return model


EARLY_STOPPING = [
    {"monitor": "loss", "patience": 2},
    {"monitor": "loss", "patience": 3, "min_delta": 0.01},
    {"monitor": "loss", "patience": 0, "mode": "max"},
    {"monitor": "loss", "patience": 2, "baseline": 0.3},
    {"monitor": "loss", "patience": 2, "start_from_epoch": 6},
    {"monitor": "loss", "patience": 4, "baseline": 0.2, "min_delta": 0.005},
]
PLATEAU = [
    {"monitor": "loss", "patience": 2},
    {"monitor": "loss", "patience": 1, "factor": 0.5, "cooldown": 2},
    {"monitor": "loss", "patience": 0, "factor": 0.3, "min_lr": 0.004},
    {"monitor": "loss", "patience": 3, "min_delta": 0.02, "mode": "min", "factor": 0.7},
    {"monitor": "loss", "patience": 2, "mode": "max", "cooldown": 1},
]


class TestAgainstKeras:
    @pytest.mark.parametrize("seed", [0, 1, 2])
    @pytest.mark.parametrize("params", EARLY_STOPPING, ids=str)
    def test_early_stopping_stops_where_keras_stops(self, keras, params, seed):
        theirs = keras.callbacks.EarlyStopping(**params)
        theirs.set_model(_keras_host(keras, 0.1))
        theirs.on_train_begin()
        ours = EarlyStopping.from_spec(normalized("early_stopping", params))
        assert ours is not None
        w = {"w": torch.zeros(1)}
        for epoch, loss in enumerate(_losses(seed)):
            theirs.on_epoch_end(epoch, {"loss": loss})
            assert ours.update(epoch + 1, {"loss": loss}, w) is theirs.model.stop_training, epoch
            assert (ours.wait, ours.best) == (theirs.wait, theirs.best), epoch
            if theirs.model.stop_training:
                break

    @pytest.mark.parametrize("seed", [0, 1, 2])
    @pytest.mark.parametrize("params", PLATEAU, ids=str)
    def test_reduce_lr_lowers_the_rate_where_keras_does(self, keras, params, seed):
        theirs = keras.callbacks.ReduceLROnPlateau(**params)
        theirs.set_model(_keras_host(keras, 0.1))
        theirs.on_train_begin()
        ours = ReduceLROnPlateau.from_spec(normalized("reduce_lr_on_plateau", params))
        assert ours is not None
        optimizer = Optimizer(make_config(normalized("optimizer", "sgd")), [torch.zeros(1)])
        optimizer.set_learning_rate(float(np.float32(0.1)))  # Keras' rate is a float32
        for epoch, loss in enumerate(_losses(seed)):
            logs: dict[str, float] = {"loss": loss}
            with warnings.catch_warnings():  # Keras' numpy 2 deprecation, in its own code
                warnings.simplefilter("ignore", DeprecationWarning)
                theirs.on_epoch_end(epoch, logs)
                rate = float(theirs.model.optimizer.learning_rate.value.item())
            ours.update(logs, optimizer)
            assert optimizer.learning_rate == rate, epoch


def _trainer(layers: list[dict[str, Any]] | None = None, **kw: Any) -> Trainer:
    return Trainer(**spec(layers, **kw), device="cpu")


class TestInAFit:
    def test_reduce_lr_lowers_the_rate_and_logs_it_as_keras(self):
        x, y = blobs()
        # the training loss falls every epoch, so with mode max it never improves
        plateau = {"monitor": "loss", "mode": "max", "patience": 1, "factor": 0.5}
        t = _trainer(optimizer={"name": "sgd", "learning_rate": 0.1}, epochs=5,
                     reduce_lr_on_plateau=plateau)  # fmt: skip
        h = t.fit(x, y)
        rate = float(np.float32(0.05))
        assert h["learning_rate"] == [0.1, 0.1, rate, rate / 2, rate / 4]
        assert list(h)[-3:] == ["learning_rate", "seconds", "samples_per_second"]
        assert t.optimizer.learning_rate == float(np.float32(rate / 8))

    def test_a_schedule_sets_each_steps_rate(self):
        """SGD without momentum moves by −lr·g: under a piecewise schedule the step
        size changes exactly at the boundaries (Keras' iterations: 0 for the first)."""
        boundaries = [2, 5]
        rates = [0.1, 0.01, 0.001]
        piecewise = {"schedule": "piecewise_constant_decay", "boundaries": boundaries,
                     "values": rates}  # fmt: skip
        t = _trainer(
            [dense(3, "softmax")],
            optimizer={"name": "sgd", "learning_rate": piecewise},
            epochs=1,
            batch_size=10,
            shuffle=False,
        )
        x, y = blobs(n=80)
        seen = []

        def on_step_end(epoch, step, steps):
            seen.append(t.optimizer.rate(t.optimizer.state.step - 1))

        t.fit(x, y, on_step_end=on_step_end)
        assert seen == [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001]

    def test_reduce_lr_with_a_schedule_is_refused(self):
        rate = {"schedule": "exponential_decay", "initial_learning_rate": 0.1,
                "decay_steps": 10, "decay_rate": 0.5}  # fmt: skip
        body = spec(optimizer={"name": "sgd", "learning_rate": rate}, epochs=2)
        body["fit"]["reduce_lr_on_plateau"] = normalized("reduce_lr_on_plateau", {})
        with pytest.raises(Exception, match="follows a schedule"):
            Trainer(**body, device="cpu")

    def test_an_unbeaten_baseline_leaves_the_first_epoch_counted(self):
        """Mode max on a falling loss: only the first epoch improves. Beating the
        baseline resets the wait there; an unbeaten one does not, so it stops sooner."""
        x, y = blobs()
        for baseline, epochs in ((-1.0, 4), (1e9, 3)):
            es = {"monitor": "loss", "mode": "max", "patience": 3, "baseline": baseline}
            assert len(_trainer(epochs=10, early_stopping=es).fit(x, y)["loss"]) == epochs

    def test_early_stopping_watches_from_start_from_epoch(self):
        x, y = blobs()
        es = {"monitor": "loss", "mode": "max", "patience": 1, "start_from_epoch": 4}
        assert len(_trainer(epochs=10, early_stopping=es).fit(x, y)["loss"]) == 6

    def test_a_nan_loss_fails_the_run_whatever_the_callbacks(self):
        x, y = blobs()
        t = _trainer(optimizer={"name": "sgd", "learning_rate": 1e30}, epochs=3)
        with pytest.raises(TrainingError, match="loss is (nan|inf)"):
            t.fit(x, y)


# optimizer, fit options for the resume tests: each new piece of state must round-trip
RESUMED = {
    "nadam_clipnorm": ({"name": "nadam", "learning_rate": 0.01, "clipnorm": 0.5}, {}),
    "ftrl_cosine_restarts": (
        {"name": "ftrl", "learning_rate": {"schedule": "cosine_decay_restarts",
                                           "initial_learning_rate": 0.1, "first_decay_steps": 7,
                                           "alpha": 0.1}},
        {},
    ),
    "lion_plateau": (
        {"name": "lion", "learning_rate": 0.001, "global_clipnorm": 1.0, "weight_decay": 0.1},
        {"reduce_lr_on_plateau": {"monitor": "val_loss", "mode": "max", "patience": 0,
                                  "factor": 0.5, "cooldown": 1}},
    ),
    "adamax_baseline": (
        {"name": "adamax", "learning_rate": 0.01, "clipvalue": 0.1},
        {"early_stopping": {"monitor": "val_loss", "patience": 9, "baseline": 1e-9,
                            "restore_best_weights": True, "start_from_epoch": 1}},
    ),
}  # fmt: skip


class TestResume:
    @pytest.mark.parametrize("case", sorted(RESUMED))
    def test_resume_mid_epoch_and_at_an_epoch_end_is_bit_identical(self, case):
        optimizer, fit = RESUMED[case]
        layers = [dense(16, "relu"), {"type": "dropout", "rate": 0.2}, dense(3, "softmax")]

        def make() -> Trainer:
            body = spec(layers, optimizer=optimizer, epochs=4, batch_size=16,
                        validation_split=0.2, **fit)  # fmt: skip
            return Trainer(**body, device="cpu")

        x, y = blobs(n=150)
        full = make()
        saved: dict[tuple[int, int], bytes] = {}
        full.fit(
            x, y,
            on_step_end=lambda e, s, n: saved.update({(e, s): full.checkpoint()})
            if (e, s) in ((2, 3), (3, 1)) else None,
            on_epoch_end=lambda e, logs: saved.update({(e, 0): full.checkpoint()})
            if e == 2 else None,
        )  # fmt: skip
        assert len(saved) == 3
        for point, data in saved.items():
            resumed = make()
            resumed.fit(x, y, resume_from=data)
            assert_weights_equal(weights(full), weights(resumed))
            assert without_timing(full.history) == without_timing(resumed.history), point
            assert full.optimizer.host_numbers() == resumed.optimizer.host_numbers(), point


class TestPacking:
    @pytest.mark.parametrize(
        "optimizer,fit",
        [
            ({"name": "nadam"}, {}),
            ({"name": "adam", "clipnorm": 1.0}, {}),
            ({"name": "sgd", "learning_rate": {"schedule": "cosine_decay",
                                               "initial_learning_rate": 0.1,
                                               "decay_steps": 10}}, {}),
            ("adam", {"reduce_lr_on_plateau": {"monitor": "loss"}}),
        ],
    )  # fmt: skip
    def test_what_the_pack_does_not_implement_trains_solo(self, optimizer, fit):
        body = spec(optimizer=optimizer, **fit)
        assert compatibility_key(body) is None
        assert compatibility_key(spec(optimizer="adam")) is not None

    def test_early_stoppings_new_arguments_pack(self):
        """The pack runs the solo EarlyStopping, its every argument included."""
        es = {"monitor": "loss", "baseline": 0.5, "start_from_epoch": 2}
        assert compatibility_key(spec(optimizer="adam", early_stopping=es)) is not None
