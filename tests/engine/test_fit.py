"""fit / evaluate / predict with Keras semantics: History, batching, validation,
early stopping, hooks, normalization, export, errors."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

from fitq.worker.engine import DataError, Trainer, TrainingError, load_predictor
from fitq.worker.engine.callbacks import EarlyStopping
from tests.engine.helpers import blobs, dense, normalized, spec


def _trainer(**kw) -> Trainer:
    return Trainer(**spec(**kw), device="cpu")


class TestHistory:
    def test_keys_are_keras_names_plus_timing(self):
        x, y = blobs()
        loss = "categorical_crossentropy"  # labels as indices, one-hot encoded by the engine
        h = _trainer(loss=loss, metrics=["accuracy", "mae"], validation_split=0.2).fit(x, y)
        assert list(h) == [
            "loss",
            "accuracy",
            "mae",
            "val_loss",
            "val_accuracy",
            "val_mae",
            "seconds",
            "samples_per_second",
        ]
        assert all(len(v) == 3 for v in h.values())
        assert all(v > 0 for v in h["samples_per_second"])

    def test_epoch_loss_is_the_batch_weighted_mean_before_each_update(self):
        """Against torch.autograd + torch.optim.SGD on the same initial weights, no shuffle,
        10 rows in batches of 4 (the partial last batch of 2 trained like Keras)."""
        layers = [dense(5, "tanh"), dense(3, "softmax")]
        x, y = blobs(n=10, features=4)
        t = _trainer(
            layers=layers,
            input_dim=4,
            optimizer={"name": "sgd", "learning_rate": 0.1},
            epochs=2,
            batch_size=4,
            shuffle=False,
        )
        w = {k: v.clone().requires_grad_() for k, v in t.model.named_tensors().items()}
        h = t.fit(x, y)
        assert t.steps_per_epoch == 3
        opt = torch.optim.SGD(list(w.values()), lr=0.1)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        for epoch in range(2):
            total = 0.0
            for lo in range(0, 10, 4):
                xb, yb = xt[lo : lo + 4], yt[lo : lo + 4]
                hidden = torch.tanh(xb @ w["layers.0.kernel"] + w["layers.0.bias"])
                logits = hidden @ w["layers.1.kernel"] + w["layers.1.bias"]
                loss = torch.nn.functional.cross_entropy(logits, yb)
                total += loss.item() * len(xb)
                opt.zero_grad()
                loss.backward()
                opt.step()
            assert h["loss"][epoch] == pytest.approx(total / 10, rel=1e-5)
        for k, v in t.model.named_tensors().items():
            torch.testing.assert_close(v, w[k].detach(), rtol=1e-5, atol=1e-6)

    def test_accuracy_is_the_fraction_of_correct_training_predictions(self):
        x, y = blobs(n=40)
        t = _trainer(epochs=1, batch_size=None, shuffle=False, layers=[dense(3, "softmax")])
        before = t.predict(x)
        h = t.fit(x, y)
        assert h["accuracy"][0] == pytest.approx(float(np.mean(before.argmax(1) == y)))

    def test_regularization_is_part_of_the_loss(self):
        x, y = blobs(n=32)
        reg = [dense(16, "relu", kernel_regularizer={"l1": 0.0, "l2": 0.5}), dense(3, "softmax")]
        plain = [dense(16, "relu"), dense(3, "softmax")]
        kw = {"epochs": 1, "batch_size": None, "optimizer": {"name": "sgd", "learning_rate": 1e-6}}
        with_reg = _trainer(layers=reg, **kw)
        w = with_reg.model.named_tensors()["layers.0.kernel"].clone()
        h_reg = with_reg.fit(x, y)
        h_plain = _trainer(layers=plain, **kw).fit(x, y)
        penalty = 0.5 * float(w.square().sum())
        assert h_reg["loss"][0] == pytest.approx(h_plain["loss"][0] + penalty, rel=1e-5)


class TestBatching:
    def test_full_batch_gradient_descent(self):
        x, y = blobs(n=50)
        t = _trainer(optimizer={"name": "sgd", "learning_rate": 0.1}, batch_size=None, epochs=2)
        steps = []
        t.fit(x, y, on_step_end=lambda e, s, n: steps.append((e, s, n)))
        assert steps == [(1, 1, 1), (2, 1, 1)]

    def test_partial_last_batch_is_trained(self):
        x, y = blobs(n=50)
        t = _trainer(batch_size=16, epochs=1)
        steps = []
        t.fit(x, y, on_step_end=lambda e, s, n: steps.append(s))
        assert steps == [1, 2, 3, 4] and t.steps_per_epoch == 4
        assert t.steps_for(50) == 4

    def test_steps_for_accounts_for_the_validation_split(self):
        t = _trainer(batch_size=10, validation_split=0.25)
        assert t.steps_for(100) == 8
        assert t.steps_for(100, has_validation_data=True) == 10


class TestValidation:
    def test_split_takes_the_last_fraction_before_shuffling(self):
        x, y = blobs(n=100)
        t = _trainer(validation_split=0.2, epochs=1)
        h = t.fit(x, y)
        assert t.n_train == 80
        expected = t.evaluate(x[80:], y[80:])
        assert h["val_loss"][0] == pytest.approx(expected["loss"], rel=1e-6)
        assert h["val_accuracy"][0] == pytest.approx(expected["accuracy"])

    def test_separate_validation_data_overrides_the_split(self):
        x, y = blobs(n=100)
        xv, yv = blobs(n=30, seed=1)
        t = _trainer(validation_split=0.5, epochs=1)
        h = t.fit(x, y, validation_data=(xv, yv))
        assert t.n_train == 100
        assert h["val_loss"][0] == pytest.approx(t.evaluate(xv, yv)["loss"], rel=1e-6)


class TestEarlyStopping:
    def test_stops_after_patience_epochs_without_improvement(self):
        x, y = blobs()
        # the training loss falls every epoch, so with mode max it never improves
        es = {
            "monitor": "loss",
            "mode": "max",
            "patience": 2,
            "min_delta": 0.0,
            "restore_best_weights": False,
        }
        h = _trainer(epochs=10, early_stopping=es).fit(x, y)
        assert len(h["loss"]) == 3

    def test_restore_best_weights_puts_back_the_best_epoch(self):
        x, y = blobs()
        es = {"monitor": "loss", "mode": "max", "patience": 2, "restore_best_weights": True}
        t = _trainer(epochs=10, early_stopping=es)
        first = {}
        t.fit(
            x,
            y,
            on_epoch_end=lambda e, logs: (
                first or first.update({k: v.clone() for k, v in t.model.named_tensors().items()})
            ),
        )
        for k, v in t.model.named_tensors().items():
            assert torch.equal(v, first[k]), k

    @pytest.mark.parametrize(
        "monitor,mode,maximize",
        [
            ("val_loss", "auto", False),
            ("val_accuracy", "auto", True),
            ("mae", "auto", False),
            ("loss", "max", True),
        ],
    )
    def test_mode(self, monitor, mode, maximize):
        es = EarlyStopping.from_spec(
            normalized("early_stopping", {"monitor": monitor, "mode": mode})
        )
        assert es is not None and es.maximize is maximize

    def test_min_delta_and_patience_follow_keras(self):
        es = EarlyStopping.from_spec(
            normalized("early_stopping", {"monitor": "val_loss", "min_delta": 0.1, "patience": 2})
        )
        assert es is not None
        w = {"w": torch.zeros(1)}
        assert not es.update(1, {"val_loss": 1.0}, w)
        assert not es.update(2, {"val_loss": 0.95}, w)  # not better by min_delta: wait 1
        assert not es.update(3, {"val_loss": 0.5}, w)  # an improvement resets wait
        assert not es.update(4, {"val_loss": 0.45}, w)  # wait 1
        assert es.update(5, {"val_loss": 0.44}, w)  # wait 2 = patience: stop
        assert es.best == 0.5 and es.best_epoch == 3 and es.stopped_epoch == 5

    def test_missing_monitor_never_stops(self):
        x, y = blobs()
        es = {"monitor": "val_loss", "patience": 0}
        assert len(_trainer(epochs=3, early_stopping=es).fit(x, y)["loss"]) == 3


class TestHooks:
    def test_step_and_epoch_hooks_are_one_based(self):
        x, y = blobs(n=40)
        calls = []
        t = _trainer(batch_size=20, epochs=2)
        t.fit(
            x,
            y,
            on_step_end=lambda e, s, n: calls.append(("step", e, s, n)),
            on_epoch_end=lambda e, logs: calls.append(("epoch", e, sorted(logs))),
        )
        keys = sorted(["loss", "accuracy", "seconds", "samples_per_second"])
        assert calls == [
            ("step", 1, 1, 2),
            ("step", 1, 2, 2),
            ("epoch", 1, keys),
            ("step", 2, 1, 2),
            ("step", 2, 2, 2),
            ("epoch", 2, keys),
        ]

    def test_exception_from_step_hook_propagates_at_the_step_boundary(self):
        x, y = blobs(n=40)
        t = _trainer(batch_size=10, epochs=3)

        class Stop(Exception):
            pass

        def hook(epoch, step, steps):
            if (epoch, step) == (2, 3):
                raise Stop

        with pytest.raises(Stop):
            t.fit(x, y, on_step_end=hook)
        assert (t.epoch, t.step) == (1, 3)
        assert len(t.history["loss"]) == 1
        assert t.checkpoint()  # consistent: it can be saved


class TestNonFinite:
    def test_diverging_loss_names_epoch_and_step(self):
        x, y = blobs()
        t = _trainer(
            optimizer={"name": "sgd", "learning_rate": 1e6},
            loss="mse",
            metrics=[],
            layers=[dense(16, "relu"), dense(1)],
            batch_size=8,
            epochs=50,
        )
        with pytest.raises(TrainingError, match=r"epoch \d+, step \d+") as err:
            t.fit(x, y.astype(np.float32) * 1e3)
        assert err.value.epoch is not None and err.value.step is not None
        assert err.value.epoch * 100 + err.value.step < 50 * 100

    @pytest.mark.parametrize("bad", ["nan_x", "labels", "shape", "rows"])
    def test_bad_data_is_a_data_error(self, bad):
        x, y = blobs(n=20)
        if bad == "nan_x":
            x[3, 2] = np.nan
        elif bad == "labels":
            y[0] = 3  # three output units: 0..2
        elif bad == "shape":
            x = x[:, :5]
        else:
            y = y[:10]
        with pytest.raises(DataError):
            _trainer().fit(x, y)


class TestReadOnlyArrays:
    def test_read_only_inputs_are_accepted_without_warnings(self):
        x, y = blobs(n=40)
        yf = np.eye(3, dtype=np.float32)[y]
        for a in (x, y, yf):
            a.flags.writeable = False
        t = _trainer(epochs=1)
        t.fit(x, y)
        t.predict(x)
        _trainer(epochs=1, loss="categorical_crossentropy").fit(x, yf)


class TestTargets:
    def test_categorical_crossentropy_takes_one_hot_or_class_indices(self):
        x, y = blobs(n=60)
        onehot = np.eye(3, dtype=np.float32)[y]
        a = _trainer(loss="categorical_crossentropy").fit(x, onehot)
        b = _trainer(loss="categorical_crossentropy").fit(x, y)
        assert a["loss"] == b["loss"] and a["accuracy"] == b["accuracy"]

    def test_binary_crossentropy_with_sigmoid(self):
        x, y = blobs(n=80, classes=2)
        t = _trainer(
            loss="binary_crossentropy",
            layers=[dense(8, "relu"), dense(1, "sigmoid")],
            optimizer={"name": "adam", "learning_rate": 0.05},
            epochs=20,
        )
        h = t.fit(x, y.astype(np.float32))
        assert h["accuracy"][-1] > 0.9
        p = t.predict(x)
        assert p.shape == (80, 1) and ((p >= 0) & (p <= 1)).all()

    def test_binary_accuracy_from_logits(self):
        x, y = blobs(n=80, classes=2)
        loss = {"name": "binary_crossentropy", "from_logits": True}
        adam = {"name": "adam", "learning_rate": 0.05}
        h = _trainer(loss=loss, layers=[dense(1)], optimizer=adam, epochs=20).fit(x, y)
        assert h["accuracy"][-1] > 0.9


class TestNormalize:
    def test_standardizes_with_training_statistics_and_exports_them(self):
        x, y = blobs(n=100)
        x = x * 50 + 7
        x[:, 0] = 3.0  # a constant column: std 0 → 1
        t = _trainer(normalize=True, validation_split=0.2, epochs=2)
        t.fit(x, y)
        tensors = safetensors.torch.load(t.export_safetensors({}))
        np.testing.assert_allclose(tensors["normalization.mean"].numpy(), x[:80].mean(0), rtol=1e-5)
        std = x[:80].std(0)
        std[0] = 1.0
        np.testing.assert_allclose(tensors["normalization.std"].numpy(), std, rtol=1e-5)
        predictor = load_predictor(spec(normalize=True)["model"], t.export_safetensors({}), "cpu")
        np.testing.assert_array_equal(predictor.predict(x), t.predict(x))


class TestExport:
    LAYERS = [
        dense(6, "relu"),
        {"type": "dropout", "rate": 0.1},
        {"type": "batch_normalization", "momentum": 0.9, "epsilon": 1e-3},
        {"type": "layer_normalization", "epsilon": 1e-3},
        dense(3, "softmax"),
    ]

    def test_spec_names_and_keras_shapes(self):
        x, y = blobs()
        t = _trainer(layers=self.LAYERS, epochs=1)
        t.fit(x, y)
        data = t.export_safetensors({"fitq_spec": json.dumps({"a": 1})})
        tensors = safetensors.numpy.load(data)
        assert {k: list(v.shape) for k, v in tensors.items()} == {
            "layers.0.kernel": [8, 6],
            "layers.0.bias": [6],
            "layers.2.gamma": [6],
            "layers.2.beta": [6],
            "layers.2.moving_mean": [6],
            "layers.2.moving_variance": [6],
            "layers.3.gamma": [6],
            "layers.3.beta": [6],
            "layers.4.kernel": [6, 3],
            "layers.4.bias": [3],
        }
        header_len = int.from_bytes(data[:8], "little")
        assert json.loads(data[8 : 8 + header_len])["__metadata__"] == {"fitq_spec": '{"a": 1}'}

    def test_predictor_reproduces_the_trainers_predictions(self):
        x, y = blobs()
        t = _trainer(layers=self.LAYERS, epochs=2)
        t.fit(x, y)
        predictor = load_predictor(spec(self.LAYERS)["model"], t.export_safetensors({}))
        p = predictor.predict(x)
        np.testing.assert_allclose(p, t.predict(x), rtol=1e-6, atol=1e-7)
        assert p.shape == (150, 3)
        np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)

    def test_predictor_refuses_wrong_shapes_and_foreign_bytes(self):
        x, y = blobs()
        t = _trainer(layers=self.LAYERS, epochs=1)
        t.fit(x, y)
        model, other = spec(self.LAYERS)["model"], spec([dense(5, "relu"), dense(3)])["model"]
        with pytest.raises(DataError):
            load_predictor(other, t.export_safetensors({}))
        with pytest.raises(DataError):
            load_predictor(model, b"not safetensors")
        with pytest.raises(DataError):
            load_predictor(model, t.export_safetensors({})).predict(x[:, :4])


class TestEvaluatePredict:
    def test_evaluate_returns_keras_names(self):
        x, y = blobs()
        t = _trainer(loss="categorical_crossentropy", metrics=["accuracy", "mse"], epochs=1)
        t.fit(x, y)
        assert sorted(t.evaluate(x, y)) == ["accuracy", "loss", "mse"]

    def test_predict_returns_the_final_activation(self):
        x, y = blobs()
        t = _trainer(epochs=1)
        p = t.predict(x)
        assert p.dtype == np.float32 and p.shape == (150, 3)
        np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)

    def test_checkpoint_is_safetensors_without_pickle(self):
        x, y = blobs(n=20)
        t = _trainer(epochs=1)
        t.fit(x, y)
        data = t.checkpoint()
        tensors = safetensors.torch.load(data)
        assert "model.layers.0.kernel" in tensors and "optimizer.exp_avg.0" in tensors
        assert b"pickle" not in data[:64] and not io.BytesIO(data).read(2).startswith(b"\x80")
