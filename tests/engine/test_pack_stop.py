"""`Pack.stop`: a member stopped at its epoch boundary (a sweep pruning a trial) ends as
its solo run ends when `stop_training` is set between epochs: the same weights (early
stopping's best ones restored), the same History, and the others go on unchanged."""

from __future__ import annotations

import pytest
import torch

from fitq.worker.engine import ConfigError
from fitq.worker.engine.pack import MemberStatus, Pack
from tests.engine.helpers import spec, without_timing
from tests.engine.pack_helpers import LAYERS, assert_close_weights, assert_histories_close, data
from tests.engine.pack_helpers import solo64 as solo

STOP_AT = 2
EARLY = {"monitor": "loss", "patience": 50, "restore_best_weights": True}


def _specs() -> list[dict]:
    return [
        spec(
            layers=LAYERS,
            seed=i,
            epochs=5,
            optimizer={"name": "adam", "learning_rate": 0.05},
            early_stopping=EARLY,
        )
        for i in range(2)
    ]


def test_a_member_stopped_at_a_boundary_ends_as_its_solo_run_stopped_there() -> None:
    specs, datasets = _specs(), [data(50, 0), data(37, 1)]
    pack = Pack("cpu", torch.float64)
    for i, (s, d) in enumerate(zip(specs, datasets, strict=True)):
        pack.add(f"m{i}", s, *d)
    for _ in range(STOP_AT):
        pack.run_epoch()
    assert pack.stop("m0") is MemberStatus.EARLY_STOPPED
    while not pack.run_epoch()["m1"].done:
        pass

    def stop_there(trainer):  # the worker's pruning: stop_training set at the epoch's end
        def hook(epoch: int, _logs: dict) -> None:
            if epoch == STOP_AT:
                trainer.stop_training = True

        return hook

    from tests.engine.pack_helpers import Float64Trainer

    stopped = Float64Trainer(**specs[0])
    stopped.fit(*datasets[0], on_epoch_end=stop_there(stopped))
    assert_close_weights(pack.weights("m0"), stopped.model.named_tensors(), rtol=1e-9)
    assert_histories_close(pack.history("m0"), stopped.history, rtol=1e-9)
    assert len(without_timing(pack.history("m0"))["loss"]) == STOP_AT
    other = solo(specs[1], *datasets[1])
    assert_close_weights(pack.weights("m1"), other.model.named_tensors(), rtol=1e-9)


def test_stops_only_between_epochs() -> None:
    s = _specs()[0]
    pack = Pack("cpu")
    pack.add("m", s, *data(50, 0))

    def inside(step: int, _steps: int) -> None:
        if step == 1:
            with pytest.raises(ConfigError, match="between its epochs"):
                pack.stop("m")

    pack.run_epoch(inside)
    assert pack.status("m") is MemberStatus.TRAINING
