"""Keras' layers beyond dense (relu, leaky_relu, elu, prelu, flatten, rescaling,
normalization, the noise layers, activity regularization) and the weight constraints:
values and gradients equal torch.autograd's in float64; the noise is the generator's,
deterministic and resumable."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from fitq.worker.engine import Trainer
from fitq.worker.engine.constraints import EPSILON as CONSTRAINT_EPSILON
from fitq.worker.engine.layers import Context, build
from fitq.worker.engine.model import Model
from fitq.worker.engine.regularization import SELU_ALPHA, SELU_SCALE
from tests.engine.helpers import (
    assert_weights_equal,
    blobs,
    dense,
    normalized,
    spec,
    weights,
    without_timing,
)

RTOL, ATOL = 1e-10, 1e-12


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=torch.float64) * scale


def _layer(cfg: dict[str, Any], in_dim: int):
    layer = build(0, in_dim, normalized("layer", cfg), _gen(1))
    layer.to(torch.device("cpu"), torch.float64)
    return layer


def _run(layer, x: torch.Tensor, dy: torch.Tensor, ctx: Context | None = None):
    """(y, dX) of our forward and backward; x itself must stay as it was."""
    x_in = x.clone()
    with torch.no_grad():
        y = layer.forward(x_in, ctx or Context(training=True, reuse=False)).clone()
        dx = layer.backward(dy.clone(), True)
    assert torch.equal(x_in, x), "a layer must not overwrite its input"
    return y, dx


def _autograd(fn, x: torch.Tensor, dy: torch.Tensor, *leaves: torch.Tensor):
    """(y, dX, d leaves) of `fn(x, *leaves)` by autograd, for the upstream gradient dy."""
    xr = x.clone().requires_grad_()
    ls = [t.detach().clone().requires_grad_() for t in leaves]
    y = fn(xr, *ls)
    y.backward(dy)
    return (y.detach(), xr.grad, *[t.grad for t in ls])


def _keras_relu(x: torch.Tensor, max_value: float | None, slope: float, t: float) -> torch.Tensor:
    """Keras' relu(x, negative_slope, max_value, threshold), as keras/src/activations does."""
    above = torch.where(x > t, x, torch.zeros_like(x))
    above = above.clamp(0.0, max_value) if max_value is not None else F.relu(above)
    return above - slope * F.relu(t - x)


X = _randn(9, 6, seed=2, scale=3.0)
DY = _randn(9, 6, seed=3)


class TestActivationLayers:
    @pytest.mark.parametrize(
        "params",
        [
            {},
            {"max_value": 6.0},
            {"negative_slope": 0.1},
            {"threshold": 0.5},
            {"max_value": 2.0, "negative_slope": 0.3, "threshold": 1.0},
            {"max_value": 0.5, "negative_slope": 0.2, "threshold": 1.0},  # max below threshold
        ],
    )
    def test_relu_is_keras_relu(self, params: dict[str, float]) -> None:
        layer = _layer({"type": "relu", **params}, 6)
        c = normalized("layer", {"type": "relu", **params})
        y, dx = _run(layer, X, DY)
        ry, rdx = _autograd(
            lambda x: _keras_relu(x, c["max_value"], c["negative_slope"], c["threshold"]), X, DY
        )
        torch.testing.assert_close(y, ry, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(dx, rdx, rtol=RTOL, atol=ATOL)

    @pytest.mark.parametrize("slope", [0.0, 0.1, 0.3, 2.0])
    def test_leaky_relu_carries_its_slope(self, slope: float) -> None:
        y, dx = _run(_layer({"type": "leaky_relu", "negative_slope": slope}, 6), X, DY)
        ry, rdx = _autograd(lambda x: F.leaky_relu(x, slope), X, DY)
        torch.testing.assert_close(y, ry, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(dx, rdx, rtol=RTOL, atol=ATOL)

    def test_leaky_relu_layer_default_is_keras_layers_0_3(self) -> None:
        assert normalized("layer", {"type": "LeakyReLU"})["negative_slope"] == 0.3

    @pytest.mark.parametrize("alpha", [1.0, 0.5, 0.0, -0.7])
    def test_elu_carries_its_alpha(self, alpha: float) -> None:
        y, dx = _run(_layer({"type": "elu", "alpha": alpha}, 6), X, DY)
        ry, rdx = _autograd(lambda x: torch.where(x > 0, x, alpha * torch.expm1(x)), X, DY)
        torch.testing.assert_close(y, ry, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(dx, rdx, rtol=RTOL, atol=ATOL)

    def test_prelu_trains_one_slope_per_unit(self) -> None:
        layer = _layer({"type": "prelu"}, 6)
        assert torch.equal(layer.params["alpha"], torch.zeros(6, dtype=torch.float64))
        layer.params["alpha"].copy_(_randn(6, seed=7, scale=0.5))
        y, dx = _run(layer, X, DY)
        ry, rdx, ralpha = _autograd(
            lambda x, a: F.relu(x) - a * F.relu(-x), X, DY, layer.params["alpha"]
        )
        torch.testing.assert_close(y, ry, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(dx, rdx, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(layer.grads["alpha"], ralpha, rtol=RTOL, atol=ATOL)

    def test_prelu_alpha_initializer(self) -> None:
        layer = _layer(
            {"type": "prelu", "alpha_initializer": {"name": "constant", "value": 0.25}}, 4
        )
        assert torch.equal(layer.params["alpha"], torch.full((4,), 0.25, dtype=torch.float64))


class TestPreprocessing:
    def test_flatten_is_the_identity_on_rows(self) -> None:
        y, dx = _run(_layer({"type": "flatten"}, 6), X, DY)
        assert torch.equal(y, X) and torch.equal(dx, DY)

    def test_rescaling(self) -> None:
        y, dx = _run(_layer({"type": "rescaling", "scale": 1 / 255, "offset": -0.5}, 6), X, DY)
        ry, rdx = _autograd(lambda x: x * (1 / 255) - 0.5, X, DY)
        torch.testing.assert_close(y, ry, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(dx, rdx, rtol=RTOL, atol=ATOL)

    @pytest.mark.parametrize("invert", [False, True])
    def test_normalization_with_its_statistics(self, invert: bool) -> None:
        mean, variance = [0.5, -1.0, 2.0, 0.0, 3.0, 1.0], [4.0, 0.25, 1.0, 0.0, 9.0, 2.0]
        cfg = {"type": "normalization", "mean": mean, "variance": variance, "invert": invert}
        y, dx = _run(_layer(cfg, 6), X, DY)
        # Keras: max(√variance, ε) in float32 (a variance of 0 divides by ε = 1e-7)
        d = torch.tensor(variance, dtype=torch.float32).sqrt().clamp(min=1e-7).double()
        m = torch.tensor(mean, dtype=torch.float32).double()
        ry, rdx = _autograd(lambda x: m + x * d if invert else (x - m) / d, X, DY)
        torch.testing.assert_close(y, ry, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(dx, rdx, rtol=RTOL, atol=ATOL)


def _noise(cfg: dict[str, Any], x: torch.Tensor, dy: torch.Tensor, seed: int = 5):
    """(the training step's noise factor, y, dX); inference is the identity."""
    layer = _layer(cfg, x.shape[1])
    y, dx = _run(layer, x, dy, Context(training=True, reuse=False, generator=_gen(seed)))
    factor = layer._mask
    with torch.no_grad():
        assert torch.equal(layer.forward(x, Context(training=False, reuse=False)), x)
    return factor, y, dx


class TestNoise:
    XN = _randn(400, 5, seed=4)
    DYN = _randn(400, 5, seed=5)

    def test_gaussian_noise_adds_and_passes_the_gradient(self) -> None:
        _, y, dx = _noise({"type": "gaussian_noise", "stddev": 0.3}, self.XN, self.DYN)
        assert torch.equal(dx, self.DYN)
        assert 0.25 < float((y - self.XN).std()) < 0.35

    def test_gaussian_dropout_multiplies_by_its_noise(self) -> None:
        noise, y, dx = _noise({"type": "gaussian_dropout", "rate": 0.2}, self.XN, self.DYN)
        torch.testing.assert_close(y, self.XN * noise, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(dx, self.DYN * noise, rtol=RTOL, atol=ATOL)
        assert abs(float(noise.std()) - math.sqrt(0.2 / 0.8)) < 0.05

    def test_alpha_dropout_is_keras_formula(self) -> None:
        rate = 0.3
        factor, y, dx = _noise({"type": "alpha_dropout", "rate": rate}, self.XN, self.DYN)
        keep = (factor != 0).double()
        alpha_p = -SELU_ALPHA * SELU_SCALE
        a = ((1 - rate) * (1 + rate * alpha_p**2)) ** -0.5
        b = -a * alpha_p * rate
        ry, rdx = _autograd(lambda x: a * (x * keep + alpha_p * (1 - keep)) + b, self.XN, self.DYN)
        torch.testing.assert_close(y, ry, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(dx, rdx, rtol=RTOL, atol=ATOL)
        assert 0.6 < float(keep.mean()) < 0.8

    @pytest.mark.parametrize(
        "cfg",
        [
            {"type": "gaussian_noise", "stddev": 0.5},
            {"type": "gaussian_dropout", "rate": 0.4},
            {"type": "alpha_dropout", "rate": 0.4},
        ],
    )
    def test_the_generator_decides_the_noise(self, cfg: dict[str, Any]) -> None:
        _, a, _ = _noise(cfg, self.XN, self.DYN, seed=1)
        _, b, _ = _noise(cfg, self.XN, self.DYN, seed=1)
        _, c, _ = _noise(cfg, self.XN, self.DYN, seed=2)
        assert torch.equal(a, b) and not torch.equal(a, c)


class TestActivityRegularization:
    @pytest.mark.parametrize("l1,l2", [(0.01, 0.0), (0.0, 0.02), (0.01, 0.02)])
    def test_penalty_and_gradient_match_autograd(self, l1: float, l2: float) -> None:
        layer = _layer({"type": "activity_regularization", "l1": l1, "l2": l2}, 6)
        y, dx = _run(layer, X, DY)
        assert torch.equal(y, X)
        n = X.shape[0]

        def reference(x: torch.Tensor) -> torch.Tensor:
            # Keras 3 adds the regularizer of the batch ÷ its rows to the batch's loss
            return (x * DY).sum() + (l1 * x.abs().sum() + l2 * x.square().sum()) / n

        xr = X.clone().requires_grad_()
        reference(xr).backward()
        torch.testing.assert_close(dx, xr.grad, rtol=RTOL, atol=ATOL)
        activity = layer.activity()
        assert activity is not None
        expected = l1 * X.abs().sum() + l2 * X.square().sum()
        torch.testing.assert_close(activity, expected, rtol=RTOL, atol=ATOL)


def _keras_constraint(name: str, w: torch.Tensor, **p: Any) -> torch.Tensor:
    """Keras 3's constraints (keras/src/constraints/constraints.py) in torch."""
    if name == "non_neg":
        return torch.clamp(w, min=0.0)
    norms = w.square().sum(dim=p.get("axis", 0), keepdim=True).sqrt()
    if name == "unit_norm":
        return w / (CONSTRAINT_EPSILON + norms)
    if name == "max_norm":
        desired = norms.clamp(0, p.get("max_value", 2.0))
    else:
        lo, hi, rate = p.get("min_value", 0.0), p.get("max_value", 1.0), p.get("rate", 1.0)
        desired = rate * norms.clamp(lo, hi) + (1 - rate) * norms
    return w * (desired / (CONSTRAINT_EPSILON + norms))


class TestConstraints:
    @pytest.mark.parametrize(
        "constraint",
        [
            {"name": "max_norm"},
            {"name": "max_norm", "max_value": 0.5, "axis": 1},
            {"name": "non_neg"},
            {"name": "unit_norm"},
            {"name": "unit_norm", "axis": -1},
            {"name": "min_max_norm", "min_value": 0.5, "max_value": 0.8},
            {"name": "min_max_norm", "min_value": 1.5, "max_value": 3.0, "rate": 0.5},
        ],
    )
    def test_applied_to_kernel_and_bias_as_keras_does(self, constraint: dict[str, Any]) -> None:
        cfg = dense(5, kernel_constraint=constraint, bias_constraint={**constraint, "axis": 0})
        if constraint["name"] == "non_neg":
            cfg["bias_constraint"] = constraint
        layer = _layer(cfg, 4)
        stored = normalized("layer", cfg)
        layer.params["kernel"].copy_(_randn(4, 5, seed=8, scale=2.0))
        layer.params["bias"].copy_(_randn(5, seed=9, scale=2.0))
        kernel, bias = layer.params["kernel"].clone(), layer.params["bias"].clone()
        layer.constrain()
        params = {k: v for k, v in stored["kernel_constraint"].items() if k != "name"}
        expected = _keras_constraint(constraint["name"], kernel, **params)
        torch.testing.assert_close(layer.params["kernel"], expected, rtol=RTOL, atol=ATOL)
        expected = _keras_constraint(constraint["name"], bias, **{**params, "axis": 0})
        torch.testing.assert_close(layer.params["bias"], expected, rtol=RTOL, atol=ATOL)

    def test_a_negative_axis_is_the_weights_own(self) -> None:
        stored = normalized("layer", dense(3, kernel_constraint={"name": "unit_norm", "axis": -1}))
        assert stored["kernel_constraint"]["axis"] == 1
        stored = normalized("layer", dense(3, bias_constraint={"name": "max_norm", "axis": -1}))
        assert stored["bias_constraint"]["axis"] == 0

    def test_the_trainer_applies_them_after_every_update(self) -> None:
        x, y = blobs(n=64)
        layers = [dense(8, "relu", kernel_constraint="non_neg"), dense(3, "softmax")]
        layers[1]["kernel_constraint"] = {"name": "max_norm", "max_value": 0.1}
        trainer = Trainer(**spec(layers, epochs=1), device="cpu")
        seen: list[float] = []
        trainer.fit(x, y, on_step_end=lambda *_: seen.append(float(_min_and_norm(trainer))))
        assert seen and max(seen) <= 0.1 + 1e-6


def _min_and_norm(trainer: Trainer) -> float:
    """The largest column norm of the output kernel, after checking the first is ≥ 0."""
    first, last = trainer.model.layers[0].params["kernel"], trainer.model.layers[1].params["kernel"]
    assert float(first.min()) >= 0.0
    return float(last.norm(dim=0).max())


class TestWholeModel:
    LAYERS = [
        {"type": "rescaling", "scale": 0.5, "offset": 0.1},
        {"type": "normalization", "mean": 0.2, "variance": 2.0},
        dense(7),
        {"type": "prelu", "alpha_initializer": {"name": "constant", "value": 0.2}},
        {"type": "activity_regularization", "l1": 0.01, "l2": 0.02},
        {"type": "relu", "max_value": 3.0, "negative_slope": 0.1, "threshold": 0.2},
        dense(6),
        {"type": "leaky_relu", "negative_slope": 0.15},
        {"type": "elu", "alpha": 0.7},
        {"type": "flatten"},
        dense(3, "softmax"),
    ]

    def test_fused_softmax_cross_entropy_matches_autograd(self) -> None:
        from fitq.worker.engine import losses

        model = Model(
            normalized("model", {"input_dim": 5, "layers": self.LAYERS}),
            seed=3,
            device="cpu",
            dtype=torch.float64,
        )
        model.fuse_final_activation()
        loss = losses.get(normalized("loss", {"name": "sparse_categorical_crossentropy"}))
        loss.from_logits = True
        x, labels = _randn(12, 5, seed=1), torch.randint(0, 3, (12, 1), generator=_gen(2))
        with torch.no_grad():
            out = model.forward(x, Context(training=True, reuse=True))
            into = torch.zeros((), dtype=torch.float64)
            model.backward(loss.total_and_grad(out, labels, into))
            penalty = model.penalty()
        assert penalty is not None
        leaves = {k: t.clone().requires_grad_() for k, t in model.named_tensors().items()}

        def forward(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            f32 = torch.tensor([0.2, 2.0], dtype=torch.float32).double()  # Keras' statistics
            h = ((h * 0.5 + 0.1) - f32[0]) / f32[1].float().sqrt().double()
            h = h @ leaves["layers.2.kernel"] + leaves["layers.2.bias"]
            h = F.relu(h) - leaves["layers.3.alpha"] * F.relu(-h)
            activity = 0.01 * h.abs().sum() + 0.02 * h.square().sum()
            h = _keras_relu(h, 3.0, 0.1, 0.2)
            h = h @ leaves["layers.6.kernel"] + leaves["layers.6.bias"]
            h = F.elu(F.leaky_relu(h, 0.15), 0.7)
            return h @ leaves["layers.10.kernel"] + leaves["layers.10.bias"], activity

        logits, activity = forward(x)
        ref = F.cross_entropy(logits, labels.view(-1)) + activity / 12
        ref.backward()
        torch.testing.assert_close(into / 12 + penalty, ref.detach(), rtol=RTOL, atol=ATOL)
        grads = dict(zip(model.named_tensors(), model.grads, strict=True))
        for name, leaf in leaves.items():
            torch.testing.assert_close(grads[name], leaf.grad, rtol=1e-9, atol=1e-11, msg=name)


class TestResume:
    LAYERS = [
        {"type": "gaussian_noise", "stddev": 0.1},
        dense(16, "selu"),
        {"type": "alpha_dropout", "rate": 0.2},
        dense(8, "relu", kernel_constraint={"name": "max_norm", "max_value": 1.5}),
        {"type": "gaussian_dropout", "rate": 0.1},
        {"type": "activity_regularization", "l2": 0.001},
        dense(3, "softmax"),
    ]

    def test_a_run_resumed_mid_epoch_is_bit_identical(self) -> None:
        """The noise stream and the stateful metrics' counts so far come back with it."""
        x, y = blobs(n=120)
        s = spec(
            self.LAYERS,
            loss="categorical_crossentropy",
            metrics=["auc", "precision", "top_k_categorical_accuracy", "root_mean_squared_error"],
            epochs=3,
            batch_size=16,
            validation_split=0.2,
        )
        whole = Trainer(**s, device="cpu")
        whole.fit(x, y)
        first = Trainer(**s, device="cpu")
        saved: list[bytes] = []

        def stop(epoch: int, step: int, steps: int) -> None:
            if epoch == 2 and step == 2:
                saved.append(first.checkpoint())
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            first.fit(x, y, on_step_end=stop)
        resumed = Trainer(**s, device="cpu")
        resumed.fit(x, y, resume_from=saved[0])
        assert_weights_equal(weights(whole), weights(resumed))
        assert without_timing(whole.history) == without_timing(resumed.history)
