"""Every layer, activation, loss and regularizer: values and gradients equal
torch.autograd's in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fitq.worker.engine import losses
from fitq.worker.engine.activations import ACTIVATIONS
from fitq.worker.engine.errors import ConfigError
from fitq.worker.engine.layers import Context, build
from fitq.worker.engine.model import Model
from tests.engine.helpers import dense, normalized

RTOL, ATOL = 1e-10, 1e-12  # float64: the hand-written gradients agree to rounding
EPS = losses.EPSILON

REFERENCE_ACTIVATIONS = {
    "linear": lambda z: z,
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softmax": lambda z: torch.softmax(z, dim=-1),
    "leaky_relu": lambda z: F.leaky_relu(z, 0.2),
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "softplus": F.softplus,
    "softsign": F.softsign,
    "silu": F.silu,
    "hard_sigmoid": F.hardsigmoid,
}


# torch's hardsigmoid backward multiplies by 1/6 rounded to float32 (aten: 1.0f / 6.0f)
ACTIVATION_RTOL = {"hard_sigmoid": 1e-7}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=torch.float64) * scale


def _layer(cfg: dict, in_dim: int):
    layer = build(0, in_dim, normalized("layer", cfg), _gen(1))
    layer.to(torch.device("cpu"), torch.float64)
    return layer


def _ours(layer, x: torch.Tensor, dy: torch.Tensor, ctx: Context | None = None):
    with torch.no_grad():
        y = layer.forward(x.clone(), ctx or Context(training=True, reuse=False)).clone()
        dx = layer.backward(dy.clone(), True)
    return y, dx


class TestActivations:
    def test_every_spec_activation_has_a_reference(self):
        assert set(ACTIVATIONS) == set(REFERENCE_ACTIVATIONS)

    @pytest.mark.parametrize("name", sorted(REFERENCE_ACTIVATIONS))
    def test_dense_with_activation_matches_autograd(self, name):
        layer = _layer(dense(5, name), 4)
        x = _randn(7, 4, seed=2, scale=2.0)
        dy = _randn(7, 5, seed=3)
        y, dx = _ours(layer, x, dy)

        w = layer.params["kernel"].clone().requires_grad_()
        b = layer.params["bias"].clone().requires_grad_()
        xr = x.clone().requires_grad_()
        yr = REFERENCE_ACTIVATIONS[name](xr @ w + b)
        yr.backward(dy)
        rtol = ACTIVATION_RTOL.get(name, RTOL)
        torch.testing.assert_close(y, yr.detach(), rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(dx, xr.grad, rtol=rtol, atol=ATOL)
        torch.testing.assert_close(layer.grads["kernel"], w.grad, rtol=rtol, atol=ATOL)
        torch.testing.assert_close(layer.grads["bias"], b.grad, rtol=rtol, atol=ATOL)

    @pytest.mark.parametrize("name", sorted(REFERENCE_ACTIVATIONS))
    def test_activation_layer_matches_autograd_and_keeps_its_input(self, name):
        layer = _layer({"type": "activation", "activation": name}, 6)
        x = _randn(5, 6, seed=4, scale=3.0)
        dy = _randn(5, 6, seed=5)
        x_in = x.clone()
        with torch.no_grad():
            y = layer.forward(x_in, Context(training=True, reuse=False)).clone()
            dx = layer.backward(dy.clone(), True)
        assert torch.equal(x_in, x), "an activation layer must not overwrite its input"
        xr = x.clone().requires_grad_()
        yr = REFERENCE_ACTIVATIONS[name](xr)
        yr.backward(dy)
        torch.testing.assert_close(y, yr.detach(), rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(dx, xr.grad, rtol=ACTIVATION_RTOL.get(name, RTOL), atol=ATOL)


class TestDense:
    def test_without_bias(self):
        layer = _layer(dense(3, "tanh", use_bias=False), 4)
        assert set(layer.params) == {"kernel"}
        x, dy = _randn(6, 4, seed=1), _randn(6, 3, seed=2)
        _, dx = _ours(layer, x, dy)
        w = layer.params["kernel"].clone().requires_grad_()
        xr = x.clone().requires_grad_()
        torch.tanh(xr @ w).backward(dy)
        torch.testing.assert_close(layer.grads["kernel"], w.grad, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(dx, xr.grad, rtol=RTOL, atol=ATOL)

    def test_kernel_is_keras_oriented(self):
        layer = _layer(dense(3), 4)
        assert layer.params["kernel"].shape == (4, 3)
        assert layer.params["bias"].shape == (3,)


class TestRegularizer:
    @pytest.mark.parametrize("l1,l2", [(0.01, 0.0), (0.0, 0.02), (0.01, 0.02)])
    def test_penalty_and_its_gradient_match_autograd(self, l1, l2):
        layer = _layer(dense(3, "relu", kernel_regularizer={"l1": l1, "l2": l2}), 4)
        x, dy = _randn(6, 4, seed=1), _randn(6, 3, seed=2)
        _, _ = _ours(layer, x, dy)
        penalty = layer.penalty()
        w = layer.params["kernel"].clone().requires_grad_()
        xr = x.clone().requires_grad_()
        ref_penalty = l1 * w.abs().sum() + l2 * w.square().sum()  # Keras' L1L2
        (F.relu(xr @ w + layer.params["bias"]) * dy).sum().add(ref_penalty).backward()
        torch.testing.assert_close(penalty, ref_penalty.detach(), rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(layer.grads["kernel"], w.grad, rtol=RTOL, atol=ATOL)


class TestDropout:
    def test_training_scales_kept_units_and_backward_uses_the_mask(self):
        layer = _layer({"type": "dropout", "rate": 0.25}, 6)
        x, dy = _randn(50, 6, seed=1), _randn(50, 6, seed=2)
        ctx = Context(training=True, reuse=False, generator=_gen(7))
        y, dx = _ours(layer, x, dy, ctx)
        kept = y != 0
        torch.testing.assert_close(y[kept], x[kept] / 0.75, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(dx, dy * kept / 0.75, rtol=RTOL, atol=ATOL)
        assert 0.6 < kept.double().mean().item() < 0.9

    def test_inference_is_identity(self):
        layer = _layer({"type": "dropout", "rate": 0.5}, 6)
        x = _randn(4, 6)
        with torch.no_grad():
            assert torch.equal(layer.forward(x, Context(training=False, reuse=False)), x)


class TestBatchNormalization:
    CFG = {
        "type": "batch_normalization",
        "momentum": 0.9,
        "epsilon": 1e-3,
        "center": True,
        "scale": True,
    }

    def _with_affine(self, layer):
        layer.params["gamma"].copy_(_randn(5, seed=8) + 1.0)
        layer.params["beta"].copy_(_randn(5, seed=9))

    def test_training_matches_autograd(self):
        layer = _layer(self.CFG, 5)
        self._with_affine(layer)
        x, dy = _randn(9, 5, seed=1, scale=3.0) + 2.0, _randn(9, 5, seed=2)
        y, dx = _ours(layer, x, dy)
        gamma = layer.params["gamma"].clone().requires_grad_()
        beta = layer.params["beta"].clone().requires_grad_()
        xr = x.clone().requires_grad_()
        yr = F.batch_norm(xr, None, None, gamma, beta, training=True, eps=1e-3)
        yr.backward(dy)
        torch.testing.assert_close(y, yr.detach(), rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(dx, xr.grad, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(layer.grads["gamma"], gamma.grad, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(layer.grads["beta"], beta.grad, rtol=RTOL, atol=ATOL)

    def test_moving_statistics_follow_keras(self):
        layer = _layer(self.CFG, 5)
        x = _randn(9, 5, seed=1) + 2.0
        _ours(layer, x, _randn(9, 5))
        var, mean = torch.var_mean(x, dim=0, correction=0)  # Keras: the biased variance
        torch.testing.assert_close(layer.buffers["moving_mean"], 0.1 * mean, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(
            layer.buffers["moving_variance"], 0.9 + 0.1 * var, rtol=RTOL, atol=ATOL
        )

    def test_inference_uses_moving_statistics(self):
        layer = _layer(self.CFG, 5)
        self._with_affine(layer)
        layer.buffers["moving_mean"].fill_(0.5)
        layer.buffers["moving_variance"].fill_(4.0)
        x = _randn(3, 5)
        with torch.no_grad():
            y = layer.forward(x, Context(training=False, reuse=False))
        expected = (x - 0.5) / (4.0 + 1e-3) ** 0.5 * layer.params["gamma"] + layer.params["beta"]
        torch.testing.assert_close(y, expected, rtol=RTOL, atol=ATOL)


class TestLayerNormalization:
    def test_matches_autograd(self):
        layer = _layer({"type": "layer_normalization", "epsilon": 1e-3}, 6)
        layer.params["gamma"].copy_(_randn(6, seed=8) + 1.0)
        layer.params["beta"].copy_(_randn(6, seed=9))
        x, dy = _randn(4, 6, seed=1, scale=2.0), _randn(4, 6, seed=2)
        y, dx = _ours(layer, x, dy)
        gamma = layer.params["gamma"].clone().requires_grad_()
        beta = layer.params["beta"].clone().requires_grad_()
        xr = x.clone().requires_grad_()
        yr = F.layer_norm(xr, (6,), gamma, beta, eps=1e-3)
        yr.backward(dy)
        torch.testing.assert_close(y, yr.detach(), rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(dx, xr.grad, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(layer.grads["gamma"], gamma.grad, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(layer.grads["beta"], beta.grad, rtol=RTOL, atol=ATOL)


def _probs(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.softmax(_randn(n, k, seed=seed, scale=2.0), dim=1)


def _clip(p: torch.Tensor) -> torch.Tensor:
    return p.clamp(EPS, 1 - EPS)


N, K = 8, 4
LABELS = torch.randint(0, K, (N,), generator=_gen(3))
ONEHOT = F.one_hot(LABELS, K).double()
SOFT = _probs(N, K, 4)
BINARY = torch.randint(0, 2, (N, 2), generator=_gen(5)).double()
REGRESSION = _randn(N, 3, seed=6, scale=2.0)

# name → (loss config, outputs, engine targets, reference mean loss as a function of outputs)
LOSS_CASES = {
    "scce_logits": (
        {"name": "sparse_categorical_crossentropy", "from_logits": True},
        _randn(N, K, seed=1, scale=3.0),
        LABELS.view(-1, 1),
        lambda o: F.cross_entropy(o, LABELS),
    ),
    "scce_probabilities": (
        {"name": "sparse_categorical_crossentropy"},
        _probs(N, K, 1),
        LABELS.view(-1, 1),
        lambda o: F.nll_loss(_clip(o / o.sum(1, keepdim=True)).log(), LABELS),
    ),
    "cce_logits": (
        {"name": "categorical_crossentropy", "from_logits": True},
        _randn(N, K, seed=1, scale=3.0),
        SOFT,
        lambda o: F.cross_entropy(o, SOFT),
    ),
    "cce_probabilities": (
        {"name": "categorical_crossentropy"},
        _probs(N, K, 2),
        ONEHOT,
        lambda o: -(ONEHOT * _clip(o / o.sum(1, keepdim=True)).log()).sum(1).mean(),
    ),
    "bce_logits": (
        {"name": "binary_crossentropy", "from_logits": True},
        _randn(N, 2, seed=1, scale=3.0),
        BINARY,
        lambda o: F.binary_cross_entropy_with_logits(o, BINARY),
    ),
    "bce_probabilities": (
        {"name": "binary_crossentropy"},
        torch.sigmoid(_randn(N, 2, seed=1)),
        BINARY,
        lambda o: F.binary_cross_entropy(_clip(o), BINARY),
    ),
    "mse": ({"name": "mse"}, _randn(N, 3, seed=1), REGRESSION, lambda o: F.mse_loss(o, REGRESSION)),
    "mae": ({"name": "mae"}, _randn(N, 3, seed=1), REGRESSION, lambda o: F.l1_loss(o, REGRESSION)),
    "huber": (
        {"name": "huber", "delta": 0.7},
        _randn(N, 3, seed=1),
        REGRESSION,
        lambda o: F.huber_loss(o, REGRESSION, delta=0.7),
    ),
}


class TestLosses:
    @pytest.mark.parametrize("case", sorted(LOSS_CASES))
    def test_value_and_gradient_match_autograd(self, case):
        cfg, out, y, reference = LOSS_CASES[case]
        loss = losses.get(normalized("loss", cfg))
        into = torch.zeros((), dtype=torch.float64)
        with torch.no_grad():
            total = loss.total(out.clone(), y)
            grad = loss.total_and_grad(out.clone(), y, into)
        o = out.clone().requires_grad_()
        ref = reference(o)
        ref.backward()
        torch.testing.assert_close(total / N, ref.detach(), rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(into / N, ref.detach(), rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(grad, o.grad, rtol=RTOL, atol=ATOL)

    @pytest.mark.parametrize(
        "cfg,fragment",
        [
            ({"name": "mse"}, "unknown loss 'mse'"),  # Keras' aliases are the service's
            ({"name": "huber"}, "missing delta"),  # and so are the defaults
            ({"name": "huber", "delta": 1.0, "reduction": "sum"}, "unknown reduction"),
            ({"name": "huber", "delta": 0.0}, "delta must be > 0"),
        ],
    )
    def test_takes_only_the_normalized_spec(self, cfg, fragment):
        with pytest.raises(ConfigError, match=fragment):
            losses.get(cfg)


class TestStability:
    """Logits of ±1e4 give a finite loss and gradient (log-sum-exp, never log(0))."""

    LOGITS = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0], [0.0, 0.0, -1e4]])

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    @pytest.mark.parametrize(
        "name", ["sparse_categorical_crossentropy", "categorical_crossentropy"]
    )
    def test_softmax_cross_entropy(self, name, dtype):
        z = self.LOGITS.to(dtype)
        labels = torch.tensor([[1], [0], [2]])
        y = labels if name.startswith("sparse") else F.one_hot(labels.view(-1), 3).to(dtype)
        into = torch.zeros((), dtype=dtype)
        loss = losses.get(normalized("loss", {"name": name, "from_logits": True}))
        grad = loss.total_and_grad(z.clone(), y, into)
        assert torch.isfinite(into) and torch.isfinite(grad).all()
        ref = F.cross_entropy(z.double(), labels.view(-1), reduction="sum")
        torch.testing.assert_close(into.double(), ref, rtol=1e-6, atol=0.0)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_sigmoid_binary_cross_entropy(self, dtype):
        z = torch.tensor([[1e4], [-1e4], [0.0]], dtype=dtype)
        y = torch.tensor([[0.0], [1.0], [1.0]], dtype=dtype)
        into = torch.zeros((), dtype=dtype)
        loss = losses.get(normalized("loss", {"name": "binary_crossentropy", "from_logits": True}))
        grad = loss.total_and_grad(z, y, into)
        assert torch.isfinite(into) and torch.isfinite(grad).all()
        torch.testing.assert_close(
            into.double(), torch.tensor(2e4 + 0.6931471805599453, dtype=torch.float64)
        )


def _reference_forward(
    model: Model, x: torch.Tensor, leaves: dict[str, torch.Tensor]
) -> torch.Tensor:
    """The model's forward pass in plain torch ops, differentiable by autograd."""
    for layer, cfg in zip(model.layers, model.layer_specs, strict=True):
        p = {k: leaves[f"layers.{layer.index}.{k}"] for k in layer.params}
        kind = cfg["type"]
        if kind == "dense":
            z = x @ p["kernel"] + p["bias"]
            act = layer.activation.name if layer is not model.layers[-1] else "linear"
            x = REFERENCE_ACTIVATIONS[act](z)
        elif kind == "dropout":
            x = x * layer._mask
        elif kind == "batch_normalization":
            x = F.batch_norm(x, None, None, p["gamma"], p["beta"], training=True, eps=layer.epsilon)
        elif kind == "layer_normalization":
            x = F.layer_norm(x, (x.shape[1],), p["gamma"], p["beta"], eps=layer.epsilon)
        elif kind == "activation":
            x = REFERENCE_ACTIVATIONS[layer.activation.name](x)
    return x


class TestModel:
    LAYERS = [
        dense(12, "relu"),
        {"type": "batch_normalization", "momentum": 0.99, "epsilon": 1e-3},
        {"type": "dropout", "rate": 0.3},
        dense(10, "tanh", kernel_regularizer={"l1": 0.0, "l2": 0.01}),
        {"type": "layer_normalization", "epsilon": 1e-3},
        {"type": "activation", "activation": "gelu"},
        dense(4, "softmax"),
    ]

    def test_whole_model_with_fused_softmax_cross_entropy_matches_autograd(self):
        cfg = {"input_dim": 6, "layers": self.LAYERS}
        model = Model(normalized("model", cfg), seed=3, device="cpu", dtype=torch.float64)
        model.fuse_final_activation()
        loss = losses.get({"name": "sparse_categorical_crossentropy", "from_logits": True})
        x = _randn(16, 6, seed=1)
        y = torch.randint(0, 4, (16, 1), generator=_gen(2))
        with torch.no_grad():
            out = model.forward(x, Context(training=True, reuse=True, generator=_gen(5)))
            into = torch.zeros((), dtype=torch.float64)
            model.backward(loss.total_and_grad(out, y, into))
            penalty = model.penalty()
        leaves = {
            k: t.clone().requires_grad_()
            for k, t in model.named_tensors().items()
            if not k.endswith(("moving_mean", "moving_variance"))
        }
        ref_out = _reference_forward(model, x, leaves)
        w3 = leaves["layers.3.kernel"]
        ref = F.cross_entropy(ref_out, y.view(-1)) + 0.01 * w3.square().sum()
        ref.backward()
        torch.testing.assert_close(into / 16 + penalty, ref.detach(), rtol=RTOL, atol=ATOL)
        grads = dict(
            zip([k for k in model.named_tensors() if k in leaves], model.grads, strict=True)
        )
        for name, leaf in leaves.items():
            torch.testing.assert_close(grads[name], leaf.grad, rtol=1e-9, atol=1e-11, msg=name)
