"""Same seed, spec and data → bit-identical runs on the CPU; a run resumed from a
checkpoint (at an epoch end, mid-epoch, or after a hook's exception) is
bit-identical to the uninterrupted one."""

from __future__ import annotations

import pytest
import torch

from fitq.worker.engine import Trainer, TrainingError
from tests.engine.helpers import (
    assert_weights_equal,
    blobs,
    dense,
    spec,
    weights,
    without_timing,
)

LAYERS = [
    dense(16, "relu"),
    {"type": "dropout", "rate": 0.3},
    {"type": "batch_normalization", "momentum": 0.9, "epsilon": 1e-3},
    dense(8, "tanh", kernel_regularizer={"l1": 0.001, "l2": 0.001}),
    {"type": "dropout", "rate": 0.1},
    dense(3, "softmax"),
]
OPTIMIZERS = {
    "adam": {"name": "adam", "learning_rate": 0.01},
    "sgd_momentum": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True},
    "rmsprop": {"name": "rmsprop", "learning_rate": 0.01, "centered": True, "momentum": 0.5},
}
EARLY_STOPPING = {
    "monitor": "val_loss",
    "min_delta": 0.0,
    "patience": 5,
    "mode": "auto",
    "restore_best_weights": True,
}


def _spec(optimizer: str, **kw):
    return spec(
        LAYERS,
        optimizer=OPTIMIZERS[optimizer],
        epochs=3,
        batch_size=16,
        validation_split=0.2,
        normalize=True,
        early_stopping=EARLY_STOPPING,
        **kw,
    )


def _state(t: Trainer):
    return (
        weights(t),
        {k: v.clone() for k, v in t.optimizer.state_tensors().items()},
        without_timing(t.history),
    )


def _assert_same_run(a: Trainer, b: Trainer) -> None:
    wa, oa, ha = _state(a)
    wb, ob, hb = _state(b)
    assert_weights_equal(wa, wb)
    assert_weights_equal(oa, ob)
    assert a.optimizer.state.step == b.optimizer.state.step
    assert ha == hb


class TestDeterminism:
    def test_same_seed_gives_bit_identical_runs(self):
        x, y = blobs(n=150)
        a, b = Trainer(**_spec("adam"), device="cpu"), Trainer(**_spec("adam"), device="cpu")
        a.fit(x, y)
        b.fit(x, y)
        _assert_same_run(a, b)

    def test_another_seed_gives_another_run(self):
        x, y = blobs(n=150)
        a, b = (
            Trainer(**_spec("adam"), device="cpu"),
            Trainer(**_spec("adam", seed=1), device="cpu"),
        )
        a.fit(x, y)
        b.fit(x, y)
        assert not torch.equal(weights(a)["layers.0.kernel"], weights(b)["layers.0.kernel"])

    def test_initial_weights_depend_only_on_seed_and_model(self):
        base = Trainer(**_spec("adam"), device="cpu")
        others = [
            Trainer(**_spec("sgd_momentum"), device="cpu"),
            Trainer(
                **spec(
                    LAYERS,
                    optimizer="adagrad",
                    loss="categorical_crossentropy",
                    metrics=["mae"],
                    epochs=7,
                    batch_size=None,
                    shuffle=False,
                ),
                device="cpu",
            ),
        ]
        for other in others:
            assert_weights_equal(weights(base), weights(other))


class _Recorder:
    """Hooks that take checkpoints at chosen points of an uninterrupted run."""

    def __init__(self, trainer: Trainer, at_steps=(), at_epochs=()):
        self.t, self.at_steps, self.at_epochs = trainer, set(at_steps), set(at_epochs)
        self.saved: dict[tuple[int, int], bytes] = {}

    def on_step_end(self, epoch, step, steps):
        if (epoch, step) in self.at_steps:
            self.saved[(epoch, step)] = self.t.checkpoint()

    def on_epoch_end(self, epoch, logs):
        if epoch in self.at_epochs:
            self.saved[(epoch, 0)] = self.t.checkpoint()


class TestResume:
    @pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
    def test_resume_from_epoch_end_and_mid_epoch_is_bit_identical(self, optimizer):
        x, y = blobs(n=150)
        full = Trainer(**_spec(optimizer), device="cpu")
        steps = full.steps_for(150)
        rec = _Recorder(full, at_steps=[(2, 3), (2, steps), (3, 1)], at_epochs=[1])
        full.fit(x, y, on_step_end=rec.on_step_end, on_epoch_end=rec.on_epoch_end)
        assert len(rec.saved) == 4
        for point, data in rec.saved.items():
            resumed = Trainer(**_spec(optimizer), device="cpu")
            resumed.fit(x, y, resume_from=data)
            _assert_same_run(full, resumed)
            assert resumed.history.keys() == full.history.keys(), point

    def test_resume_after_a_hook_stopped_the_run(self):
        x, y = blobs(n=150)
        full = Trainer(**_spec("adam"), device="cpu")
        full.fit(x, y)

        class Shutdown(Exception):
            pass

        def stop_at(epoch, step, steps):
            if (epoch, step) == (2, 5):
                raise Shutdown

        stopped = Trainer(**_spec("adam"), device="cpu")
        with pytest.raises(Shutdown):
            stopped.fit(x, y, on_step_end=stop_at)
        data = stopped.checkpoint()
        resumed = Trainer(**_spec("adam"), device="cpu")
        resumed.fit(x, y, resume_from=data)
        _assert_same_run(full, resumed)

    def test_resume_twice_in_a_row(self):
        x, y = blobs(n=150)
        full = Trainer(**_spec("sgd_momentum"), device="cpu")
        rec = _Recorder(full, at_steps=[(1, 2)])
        full.fit(x, y, on_step_end=rec.on_step_end)
        second = Trainer(**_spec("sgd_momentum"), device="cpu")
        rec2 = _Recorder(second, at_steps=[(2, 7)])
        second.fit(x, y, resume_from=rec.saved[(1, 2)], on_step_end=rec2.on_step_end)
        third = Trainer(**_spec("sgd_momentum"), device="cpu")
        third.fit(x, y, resume_from=rec2.saved[(2, 7)])
        _assert_same_run(full, third)

    def test_checkpoint_of_another_spec_is_refused(self):
        x, y = blobs(n=150)
        t = Trainer(**_spec("adam"), device="cpu")
        rec = _Recorder(t, at_epochs=[1])
        t.fit(x, y, on_epoch_end=rec.on_epoch_end)
        other = Trainer(**_spec("adam", seed=5), device="cpu")
        with pytest.raises(TrainingError, match="different spec"):
            other.fit(x, y, resume_from=rec.saved[(1, 0)])
        with pytest.raises(TrainingError, match="not a fitq checkpoint"):
            Trainer(**_spec("adam"), device="cpu").fit(x, y, resume_from=b"garbage")
