"""Keras' losses beyond the first six, and label smoothing: the value equals Keras' own
function (Keras 3, torch backend, float64) and the gradient equals torch.autograd's
through Keras' function. Every loss here trains solo (the packed engine has none)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from fitq.service.spec.losses import LOSS_CLASSES
from fitq.worker.engine import losses
from fitq.worker.engine.pack import compatibility_key
from tests.engine.helpers import dense, normalized, spec
from tests.support.keras_reference import keras_on_torch

RTOL, ATOL = 1e-10, 1e-12
N, K = 10, 4


@pytest.fixture(scope="module")
def keras(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """Keras 3 on the torch backend, computing in float64."""
    with keras_on_torch(tmp_path_factory, floatx="float64") as module:
        yield module


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=torch.float64) * scale


def _onehot(seed: int, k: int = K) -> torch.Tensor:
    labels = torch.randint(0, k, (N,), generator=_gen(seed))
    return torch.nn.functional.one_hot(labels, k).double()


def _binary(seed: int, k: int = 1) -> torch.Tensor:
    return torch.randint(0, 2, (N, k), generator=_gen(seed)).double()


LOGITS = _randn(N, K, seed=1, scale=2.0)
PROBS = torch.softmax(_randn(N, K, seed=2, scale=2.0), dim=1)
SIGMOID_LOGITS = _randn(N, 1, seed=3, scale=2.0)
SIGMOIDS = torch.sigmoid(_randn(N, 3, seed=4, scale=2.0))
VALUES = _randn(N, 3, seed=5, scale=2.0)
TARGETS = _randn(N, 3, seed=6, scale=2.0) + 0.2 * torch.sign(_randn(N, 3, seed=16))
POSITIVE = torch.nn.functional.softplus(_randn(N, 3, seed=7))
COUNTS = torch.randint(0, 5, (N, 3), generator=_gen(8)).double()
DISTRIBUTIONS = torch.softmax(_randn(N, K, seed=9), dim=1)
SIGNED = _binary(10, 3) * 2.0 - 1.0

EPS = losses.EPSILON


def _signed(y: torch.Tensor) -> torch.Tensor:
    return 2.0 * y - 1.0 if bool(((y == 0) | (y == 1)).all()) else y


def _smooth(y: torch.Tensor, ls: float, binary: bool) -> torch.Tensor:
    return y * (1.0 - ls) + (0.5 if binary else 1.0 / y.shape[1]) * ls


def _bfce(o: torch.Tensor, y: torch.Tensor, **p: Any) -> torch.Tensor:
    t = _smooth(y, p.get("label_smoothing", 0.0), True)
    q = torch.sigmoid(o) if p.get("from_logits") else o
    c = q.clamp(EPS, 1 - EPS)
    bce = -(t * c.log() + (1 - t) * (1 - c).log())
    focal = (1.0 - (t * q + (1 - t) * (1 - q))).pow(p.get("gamma", 2.0)) * bce
    if p.get("apply_class_balancing"):
        alpha = p.get("alpha", 0.25)
        focal = (t * alpha + (1 - t) * (1 - alpha)) * focal
    return focal.mean(-1)


def _cfce(o: torch.Tensor, y: torch.Tensor, **p: Any) -> torch.Tensor:
    t = _smooth(y, p.get("label_smoothing", 0.0), False)
    q = torch.softmax(o, -1) if p.get("from_logits") else o
    c = (q / q.sum(-1, keepdim=True)).clamp(EPS, 1 - EPS)
    return (p.get("alpha", 0.25) * (1 - c).pow(p.get("gamma", 2.0)) * -t * c.log()).sum(-1)


def _cce(o: torch.Tensor, y: torch.Tensor, **p: Any) -> torch.Tensor:
    t = _smooth(y, p.get("label_smoothing", 0.0), False)
    if p.get("from_logits"):
        return -(t * torch.log_softmax(o, -1)).sum(-1)
    return -(t * (o / o.sum(-1, keepdim=True)).clamp(EPS, 1 - EPS).log()).sum(-1)


def _bce(o: torch.Tensor, y: torch.Tensor, **p: Any) -> torch.Tensor:
    t = _smooth(y, p.get("label_smoothing", 0.0), True)
    if p.get("from_logits"):
        return F.binary_cross_entropy_with_logits(o, t, reduction="none").mean(-1)
    return F.binary_cross_entropy(o.clamp(EPS, 1 - EPS), t, reduction="none").mean(-1)


# Keras 3's loss functions (keras/src/losses/losses.py) in float64 torch, line by line;
# each is checked against Keras' own function, which computes partly in float32.
REFERENCES: dict[str, Callable[..., torch.Tensor]] = {
    "mean_absolute_percentage_error": lambda o, y: (
        100.0 * ((y - o) / y.abs().clamp(min=EPS)).abs().mean(-1)
    ),
    "mean_squared_logarithmic_error": lambda o, y: (
        ((o.clamp(min=EPS) + 1).log() - (y.clamp(min=EPS) + 1).log()).square().mean(-1)
    ),
    "log_cosh": lambda o, y: (
        (o - y) + F.softplus(-2.0 * (o - y)) - torch.log(torch.tensor(2.0, dtype=o.dtype))
    ).mean(-1),
    "kl_divergence": lambda o, y: (y.clamp(EPS, 1) * (y.clamp(EPS, 1) / o.clamp(EPS, 1)).log()).sum(
        -1
    ),
    "poisson": lambda o, y: (o - y * (o + EPS).log()).mean(-1),
    "hinge": lambda o, y: (1.0 - _signed(y) * o).clamp(min=0.0).mean(-1),
    "squared_hinge": lambda o, y: (1.0 - _signed(y) * o).clamp(min=0.0).square().mean(-1),
    "categorical_hinge": lambda o, y: (((1.0 - y) * o).amax(-1) - (y * o).sum(-1) + 1.0).clamp(
        min=0.0
    ),
    "categorical_crossentropy": _cce,
    "binary_crossentropy": _bce,
    "binary_focal_crossentropy": _bfce,
    "categorical_focal_crossentropy": _cfce,
}


# id → (fitq's loss as a user writes it, outputs, targets, Keras' function, its kwargs)
CASES: dict[str, tuple[Any, torch.Tensor, torch.Tensor, str, dict[str, Any]]] = {
    "mape": ("mape", VALUES, TARGETS, "mean_absolute_percentage_error", {}),
    "msle": ("msle", VALUES, POSITIVE, "mean_squared_logarithmic_error", {}),
    "log_cosh": ("logcosh", VALUES, TARGETS, "log_cosh", {}),
    "kld": ("kld", PROBS, DISTRIBUTIONS, "kl_divergence", {}),
    "kld_one_hot": ("kl_divergence", PROBS, _onehot(11), "kl_divergence", {}),
    "poisson": ("poisson", POSITIVE, COUNTS, "poisson", {}),
    "hinge_01": ("hinge", VALUES, _binary(12, 3), "hinge", {}),
    "hinge_signed": ("hinge", VALUES, SIGNED, "hinge", {}),
    "squared_hinge_01": ("squared_hinge", VALUES, _binary(12, 3), "squared_hinge", {}),
    "squared_hinge_signed": ("squared_hinge", VALUES, SIGNED, "squared_hinge", {}),
    "categorical_hinge": ("categorical_hinge", LOGITS, _onehot(13), "categorical_hinge", {}),
    "cce_smoothing_logits": (
        {"name": "categorical_crossentropy", "from_logits": True, "label_smoothing": 0.1},
        LOGITS,
        _onehot(14),
        "categorical_crossentropy",
        {"from_logits": True, "label_smoothing": 0.1},
    ),
    "cce_smoothing_probabilities": (
        {"name": "categorical_crossentropy", "label_smoothing": 0.3},
        PROBS,
        _onehot(14),
        "categorical_crossentropy",
        {"label_smoothing": 0.3},
    ),
    "bce_smoothing_logits": (
        {"name": "binary_crossentropy", "from_logits": True, "label_smoothing": 0.2},
        SIGMOID_LOGITS,
        _binary(15),
        "binary_crossentropy",
        {"from_logits": True, "label_smoothing": 0.2},
    ),
    "bce_smoothing_probabilities": (
        {"name": "binary_crossentropy", "label_smoothing": 0.2},
        SIGMOIDS,
        _binary(15, 3),
        "binary_crossentropy",
        {"label_smoothing": 0.2},
    ),
    "binary_focal": (
        "binary_focal_crossentropy",
        SIGMOIDS,
        _binary(16, 3),
        "binary_focal_crossentropy",
        {},
    ),
    "binary_focal_everything": (
        {
            "name": "binary_focal_crossentropy",
            "apply_class_balancing": True,
            "alpha": 0.4,
            "gamma": 0.5,
            "from_logits": True,
            "label_smoothing": 0.1,
        },
        SIGMOID_LOGITS,
        _binary(17),
        "binary_focal_crossentropy",
        {
            "apply_class_balancing": True,
            "alpha": 0.4,
            "gamma": 0.5,
            "from_logits": True,
            "label_smoothing": 0.1,
        },
    ),
    "binary_focal_gamma_0": (
        {"name": "binary_focal_crossentropy", "gamma": 0.0},
        SIGMOIDS,
        _binary(18, 3),
        "binary_focal_crossentropy",
        {"gamma": 0.0},
    ),
    "categorical_focal": (
        "categorical_focal_crossentropy",
        PROBS,
        _onehot(19),
        "categorical_focal_crossentropy",
        {},
    ),
    "categorical_focal_everything": (
        {
            "name": "categorical_focal_crossentropy",
            "alpha": 0.7,
            "gamma": 1.5,
            "from_logits": True,
            "label_smoothing": 0.2,
        },
        LOGITS,
        _onehot(20),
        "categorical_focal_crossentropy",
        {"alpha": 0.7, "gamma": 1.5, "from_logits": True, "label_smoothing": 0.2},
    ),
    "categorical_focal_gamma_0": (
        {"name": "categorical_focal_crossentropy", "gamma": 0.0},
        PROBS,
        _onehot(21),
        "categorical_focal_crossentropy",
        {"gamma": 0.0},
    ),
}


class TestAgainstKeras:
    @pytest.mark.parametrize("case", list(CASES))
    def test_value_and_gradient_equal_autograd(self, case: str) -> None:
        cfg, out, y, fn, kwargs = CASES[case]
        loss = losses.get(normalized("loss", cfg))
        into = torch.zeros((), dtype=torch.float64)
        with torch.no_grad():
            total = loss.total(out.clone(), y)
            grad = loss.total_and_grad(out.clone(), y, into)
        o = out.clone().requires_grad_()
        reference = REFERENCES[fn](o, y, **kwargs).mean()  # sum_over_batch_size
        reference.backward()
        torch.testing.assert_close(total / N, reference.detach(), rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(into / N, reference.detach(), rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(grad, o.grad, rtol=1e-9, atol=ATOL)

    @pytest.mark.parametrize("case", list(CASES))
    def test_the_reference_is_keras(self, case: str, keras: ModuleType) -> None:
        _, out, y, fn, kwargs = CASES[case]
        expected = getattr(keras.losses, fn)(y, out, **kwargs).double()
        torch.testing.assert_close(REFERENCES[fn](out, y, **kwargs), expected, rtol=1e-6, atol=1e-6)

    def test_every_loss_the_spec_accepts_is_covered(self) -> None:
        covered = {normalized("loss", cfg)["name"] for cfg, *_ in CASES.values()}
        first_six = {
            "sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
            "mean_squared_error", "mean_absolute_error", "huber",
        }  # fmt: skip
        assert covered | first_six == set(LOSS_CLASSES)  # those six: test_gradients.py

    def test_hinge_labels_are_decided_per_batch_as_keras(self, keras: ModuleType) -> None:
        """0/1 labels become −1/1 only when the whole batch is 0/1, on the device."""
        y = torch.tensor([[0.0], [1.0], [0.5]], dtype=torch.float64)
        out = _randn(3, 1, seed=22)
        loss = losses.get(normalized("loss", "hinge"))
        expected = keras.losses.hinge(y, out).sum().double()
        torch.testing.assert_close(loss.total(out, y), expected, rtol=1e-6, atol=1e-6)


class TestSolo:
    @pytest.mark.parametrize(
        "loss",
        [
            "mape", "msle", "logcosh", "kld", "poisson", "hinge", "squared_hinge",
            "categorical_hinge",
            {"name": "categorical_crossentropy", "label_smoothing": 0.1},
            {"name": "binary_focal_crossentropy", "alpha": 0.0, "gamma": 0.0},
            {"name": "categorical_focal_crossentropy", "alpha": 0.0, "gamma": 0.0},
        ],
    )  # fmt: skip
    def test_the_pack_leaves_them_solo(self, loss: Any) -> None:
        s = spec([dense(4, "relu"), dense(3, "softmax")], loss=loss, metrics=[])
        assert compatibility_key(s) is None
        plain = copy.deepcopy(s)
        plain["compile"]["loss"] = normalized("loss", "categorical_crossentropy")
        assert compatibility_key(plain) is not None
