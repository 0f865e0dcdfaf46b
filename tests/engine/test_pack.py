"""A packed member computes its solo run's math: in float64 its weights and History after
3 epochs equal the solo trainer's within 1e-9 relative, for every optimizer (members of
one pack mixing their switches) and every loss, members differing in seed, learning rate
and hyperparameters and training on datasets of different sizes; in float32 its weights
after every step agree to 1e-5."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from fitq.worker.engine import Trainer
from fitq.worker.engine.pack import Pack
from tests.engine.helpers import assert_weights_equal, dense, spec
from tests.engine.pack_helpers import (
    LAYERS,
    ROWS,
    assert_close_weights,
    assert_histories_close,
    data,
    member_specs,
    run_pack,
    solo64,
)

RTOL64 = 1e-9

# one pack per optimizer; its three members mix the rule's switches
OPTIMIZERS = {
    "sgd": [
        {"name": "sgd", "learning_rate": 0.1},
        {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "weight_decay": 1e-3},
        {"name": "sgd", "learning_rate": 0.02, "momentum": 0.5, "nesterov": True},
    ],
    "adagrad": [
        {"name": "adagrad", "learning_rate": 0.1},
        {"name": "adagrad", "learning_rate": 0.05, "initial_accumulator_value": 0.5},
        {"name": "adagrad", "learning_rate": 0.2, "epsilon": 1e-3, "weight_decay": 0.01},
    ],
    "rmsprop": [
        {"name": "rmsprop", "learning_rate": 0.01},
        {"name": "rmsprop", "learning_rate": 0.005, "rho": 0.8, "centered": True},
        {"name": "rmsprop", "learning_rate": 0.002, "momentum": 0.9, "weight_decay": 1e-3},
    ],
    "adam": [
        {"name": "adam", "learning_rate": 0.01},
        {"name": "adam", "learning_rate": 0.003, "beta_1": 0.8, "amsgrad": True},
        {
            "name": "adam",
            "learning_rate": 0.02,
            "beta_2": 0.99,
            "epsilon": 1e-4,
            "weight_decay": 1e-3,
        },
    ],
    "adamw": [
        {"name": "adamw", "learning_rate": 0.01},
        {"name": "adamw", "learning_rate": 0.005, "weight_decay": 0.1, "amsgrad": True},
        {"name": "adamw", "learning_rate": 0.02, "beta_1": 0.5, "weight_decay": 0.0},
    ],
}

# (loss, final layer, metrics): each loss on the outputs it is meant for, fused or not
LOSSES = {
    "sparse_cce_fused": ("sparse_categorical_crossentropy", dense(3, "softmax"), ["accuracy"]),
    "sparse_cce_logits": (
        {"name": "sparse_categorical_crossentropy", "from_logits": True},
        dense(3),
        ["accuracy"],
    ),
    "sparse_cce_probabilities": (
        "sparse_categorical_crossentropy",
        dense(3, "sigmoid"),
        ["accuracy"],
    ),
    "cce_fused": ("categorical_crossentropy", dense(3, "softmax"), ["accuracy", "mae"]),
    "cce_probabilities": ("categorical_crossentropy", dense(3, "sigmoid"), ["accuracy"]),
    "bce_fused": ("binary_crossentropy", dense(1, "sigmoid"), ["accuracy"]),
    "bce_logits": ({"name": "binary_crossentropy", "from_logits": True}, dense(1), ["accuracy"]),
    "bce_probabilities": ("binary_crossentropy", dense(1, "hard_sigmoid"), ["accuracy"]),
    "mse": ("mean_squared_error", dense(2), ["mae"]),
    "mae": ("mean_absolute_error", dense(2), ["mse"]),
    "huber": ({"name": "huber", "delta": 0.5}, dense(2), ["mae"]),
}


def _targets(loss_name: str, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    if "binary" in loss_name:
        return (y == 0).astype(np.float32)
    if "categorical" in loss_name:
        return y
    return np.stack([x[:, 0] - x[:, 1], x[:, 2]], axis=1).astype(np.float32)


def _check_against_solo(specs: list[dict[str, Any]], datasets: list, **add: Any) -> None:
    pack = run_pack(specs, datasets, torch.float64, **add)
    for i, (s, (x, y)) in enumerate(zip(specs, datasets, strict=True)):
        fit = {"validation_data": add["validation"]} if "validation" in add else {}
        solo = solo64(s, x, y, **fit)
        assert_close_weights(pack.weights(f"m{i}"), solo.model.named_tensors(), RTOL64)
        assert_histories_close(pack.history(f"m{i}"), solo.history, RTOL64)


class TestSameMathAsSolo:
    @pytest.mark.parametrize("name", list(OPTIMIZERS))
    def test_every_optimizer(self, name):
        specs = member_specs(OPTIMIZERS[name])
        _check_against_solo(specs, [data(r, i) for i, r in enumerate(ROWS)])

    @pytest.mark.parametrize("case", list(LOSSES))
    def test_every_loss(self, case):
        loss, last, metrics = LOSSES[case]
        name = loss if isinstance(loss, str) else loss["name"]
        specs = member_specs(
            [{"name": "adam", "learning_rate": lr} for lr in (0.01, 0.003, 0.03)],
            layers=[dense(8, "relu"), last],
            loss=loss,
            metrics=metrics,
        )
        datasets = []
        for i, r in enumerate(ROWS):
            x, y = data(r, i)
            datasets.append((x, _targets(name, y, x)))
        _check_against_solo(specs, datasets)

    @pytest.mark.parametrize(
        "fit",
        [
            {"validation_split": 0.25},
            {"normalize": True, "validation_split": 0.2},
            {"shuffle": False},
            {"batch_size": None, "epochs": 4},
            {
                "validation_split": 0.3,
                "early_stopping": {
                    "monitor": "val_loss",
                    "patience": 0,
                    "restore_best_weights": True,
                },
                "epochs": 6,
            },
        ],
        ids=["validation_split", "normalize", "no_shuffle", "full_batch", "early_stopping"],
    )
    def test_fit_settings(self, fit):
        specs = member_specs(
            [{"name": "sgd", "learning_rate": lr, "momentum": 0.9} for lr in (0.5, 0.1, 0.3)],
            **fit,
        )
        _check_against_solo(specs, [data(r, i) for i, r in enumerate(ROWS)])

    def test_explicit_validation_data(self):
        specs = member_specs([{"name": "adam", "learning_rate": lr} for lr in (0.01, 0.05)])
        _check_against_solo(specs, [data(40, 0), data(30, 1)], validation=data(20, 9))

    def test_dropout_regularizers_and_layer_normalization(self):
        """Members differ in dropout rate (0 included), regularization and ε."""

        def layers(rate: float, l2: float, eps: float) -> list[dict[str, Any]]:
            reg = {"l1": 0.001, "l2": l2}
            return [
                dense(8, "relu", kernel_regularizer=reg),
                {"type": "dropout", "rate": rate},
                {"type": "layer_normalization", "epsilon": eps},
                {"type": "activation", "activation": "gelu"},
                dense(3, "softmax"),
            ]

        specs = [
            spec(
                layers=layers(rate, l2, eps),
                optimizer={"name": "adam", "learning_rate": 0.01},
                seed=i,
                validation_split=0.2,
            )
            for i, (rate, l2, eps) in enumerate(
                [(0.3, 0.01, 1e-3), (0.0, 0.0, 1e-2), (0.5, 0.1, 1e-3)]
            )
        ]
        _check_against_solo(specs, [data(r, i) for i, r in enumerate(ROWS)])

    def test_members_with_different_epochs_finish_on_their_own(self):
        specs = [spec(layers=LAYERS, seed=i, epochs=e) for i, e in enumerate((1, 3, 2))]
        pack = Pack("cpu", torch.float64)
        for i, s in enumerate(specs):
            pack.add(f"m{i}", s, *data(ROWS[i], i))
        ended = [{k: r.status.value for k, r in pack.run_epoch().items()} for _ in range(3)]
        assert ended == [
            {"m0": "finished", "m1": "continue", "m2": "continue"},
            {"m1": "continue", "m2": "finished"},
            {"m1": "finished"},
        ]
        for i, s in enumerate(specs):
            solo = solo64(s, *data(ROWS[i], i))
            assert_close_weights(pack.weights(f"m{i}"), solo.model.named_tensors(), RTOL64)


class TestFloat32:
    def test_weights_after_every_step_agree_with_solo_to_1e_5(self):
        specs = member_specs(OPTIMIZERS["adam"][:2], epochs=2)
        datasets = [data(r, i) for i, r in enumerate(ROWS[:2])]
        pack = Pack("cpu", torch.float32)
        for i, (s, (x, y)) in enumerate(zip(specs, datasets, strict=True)):
            pack.add(f"m{i}", s, x, y)
        packed: list[list[dict[str, torch.Tensor]]] = [[], []]
        seen: list[tuple[int, int] | None] = [None, None]

        def record(step: int, steps: int) -> None:  # each member's weights after its steps
            for i in range(2):
                position = pack.progress(f"m{i}")[:2]
                if position != seen[i]:
                    seen[i] = position
                    packed[i].append(pack.weights(f"m{i}"))

        for _ in range(2):
            pack.run_epoch(on_step=record)
        for i, (s, (x, y)) in enumerate(zip(specs, datasets, strict=True)):
            solo = Trainer(**s, device="cpu")
            steps: list[dict[str, torch.Tensor]] = []
            solo.fit(
                x,
                y,
                on_step_end=lambda *_, t=solo, out=steps: out.append(
                    {k: v.clone() for k, v in t.model.named_tensors().items()}
                ),
            )
            assert len(packed[i]) == len(steps) == 2 * _steps(ROWS[i])
            for ours, theirs in zip(packed[i], steps, strict=True):
                assert_close_weights(ours, theirs, 1e-5)


def _steps(rows: int, batch: int = 16) -> int:
    return -(-rows // batch)


def test_a_step_without_padding_sums_the_same_bits_as_a_masked_one():
    """A step where every member has a full batch sums its rows unmasked; a member's
    History and weights are the same bits whether its packmate pads that step or not."""
    specs = member_specs([{"name": "adam", "learning_rate": 0.01}] * 2, epochs=2)
    mine, mate = data(37, 1), data(20, 2)  # steps of 16, 16, 5 and of 16, 4 rows

    def run(datasets: list[tuple[np.ndarray, np.ndarray]]) -> Pack:
        return run_pack(specs[: len(datasets)], datasets, torch.float32)

    alone, padded = run([mine]), run([mine, mate])
    for key in ("loss", "accuracy"):
        assert alone.history("m0")[key] == padded.history("m0")[key], key
    assert_weights_equal(alone.weights("m0"), padded.weights("m0"))
