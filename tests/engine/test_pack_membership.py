"""Members come and go: a NaN member fails alone, a member removed (between rounds or in
the middle of one) leaves the others bit-identical to a pack that never had it, a member
joins at an epoch boundary and computes its solo run, and only compatible specs join."""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np
import pytest
import torch

from fitq.worker.engine import ConfigError, DataError, Trainer, TrainingError
from fitq.worker.engine.pack import MemberStatus, Pack, compatibility_key
from tests.engine.helpers import assert_weights_equal, dense, spec, without_timing
from tests.engine.pack_helpers import ROWS, assert_close_weights, data, solo64

LAYERS = [dense(8, "relu"), {"type": "dropout", "rate": 0.25}, dense(3, "softmax")]


def _spec(i: int, **kw: Any) -> dict[str, Any]:
    kw.setdefault("optimizer", {"name": "adam", "learning_rate": 0.01 * (i + 1)})
    return spec(layers=LAYERS, seed=i, validation_split=0.2, **kw)


def _pack(ids: list[int], dtype: torch.dtype = torch.float32) -> Pack:
    pack = Pack("cpu", dtype)
    for i in ids:
        pack.add(f"m{i}", _spec(i), *data(ROWS[i], i))
    return pack


def _finish(pack: Pack, on_step=None) -> None:
    while any(not r.done for r in pack.run_epoch(on_step).values()):
        pass


def _any_nonfinite(message: str) -> str:
    return re.sub(r"loss is (nan|-?inf)", "loss is <non-finite>", message)


def _same_runs(a: Pack, b: Pack, ids: list[str]) -> None:
    for m in ids:
        assert_weights_equal(a.weights(m), b.weights(m))
        assert without_timing(a.history(m)) == without_timing(b.history(m))


class TestFailure:
    def _diverging(self) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        x, y = data(40, 5)
        s = spec(
            layers=[dense(4, "linear"), dense(2)],
            loss="mean_squared_error",
            metrics=["mae"],
            optimizer={"name": "sgd", "learning_rate": 1e12},
            seed=5,
        )
        return s, x * 1e3, np.stack([x[:, 0], x[:, 1]], axis=1) * 1e3

    def test_a_nan_member_fails_alone_where_solo_fails(self):
        bad, x, y = self._diverging()
        others = [
            spec(
                layers=[dense(4, "linear"), dense(2)],
                loss="mean_squared_error",
                metrics=["mae"],
                optimizer={"name": "sgd", "learning_rate": 0.01},
                seed=i,
            )
            for i in (0, 1)
        ]
        datasets = [data(ROWS[i], i) for i in (0, 1)]
        regress = [(xx, np.stack([xx[:, 0], xx[:, 1]], axis=1)) for xx, _ in datasets]
        with_bad, without = Pack("cpu"), Pack("cpu")
        for p in (with_bad, without):
            for i, (s, d) in enumerate(zip(others, regress, strict=True)):
                p.add(f"m{i}", s, *d)
        with_bad.add("bad", bad, x, y)
        first = with_bad.run_epoch()
        assert first["bad"].status is MemberStatus.FAILED
        with pytest.raises(TrainingError) as solo:
            Trainer(**bad, device="cpu").fit(x, y)
        error = first["bad"].error
        # the same message, but which non-finite value (inf or nan) the step's loss reached
        # depends on the GEMMs' summation order (bmm here, addmm solo; MKL's kernels for
        # the CPU at hand): past float32's range, inf − inf is nan in one order, not another
        assert error is not None
        assert _any_nonfinite(str(error)) == _any_nonfinite(str(solo.value))
        assert (error.epoch, error.step) == (solo.value.epoch, solo.value.step)
        assert {k: r.status for k, r in first.items() if k != "bad"} == {
            "m0": MemberStatus.TRAINING,
            "m1": MemberStatus.TRAINING,
        }
        with pytest.raises(TrainingError):
            with_bad.checkpoint("bad")
        with_bad.remove("bad")
        _finish(with_bad)
        _finish(without)
        _same_runs(with_bad, without, ["m0", "m1"])

    def test_a_nan_in_an_interrupted_round_is_found_when_the_epoch_ends(self):
        bad, x, y = self._diverging()  # its loss is NaN from step 2 on
        pack = Pack("cpu")
        pack.add("bad", bad, x, y)

        def stop_after_step_2(step: int, steps: int) -> None:
            if step == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            pack.run_epoch(stop_after_step_2)
        result = pack.run_epoch()["bad"]
        assert result.status is MemberStatus.FAILED and result.error is not None
        assert (result.error.epoch, result.error.step) == (1, 2)


class TestRemove:
    def test_between_rounds_the_others_are_bit_identical_to_a_pack_without_it(self):
        pack, reference = _pack([0, 1, 2]), _pack([0, 2])
        pack.run_epoch()
        reference.run_epoch()
        pack.remove("m1")
        assert pack.members == ("m0", "m2")
        _finish(pack)
        _finish(reference)
        _same_runs(pack, reference, ["m0", "m2"])

    def test_odd_batch_sizes_too(self):
        """Batches of 7 rows through a 64 → 10 layer: shapes where MKL's batched GEMM rounds
        a matrix differently in different packs unless the batch width is padded."""

        def run(ids: list[int]) -> Pack:
            pack = Pack("cpu")
            for i in ids:
                s = spec(layers=[dense(64, "relu"), dense(10, "softmax")], seed=i, batch_size=7)
                pack.add(f"m{i}", s, *data(ROWS[i], i, classes=10))
            _finish(pack)
            return pack

        _same_runs(run([0, 1, 2]), run([0, 2]), ["m0", "m2"])
        _same_runs(run([2]), run([0, 2]), ["m2"])

    def test_in_the_middle_of_a_round_it_stops_at_once(self):
        pack, reference = _pack([0, 1, 2]), _pack([0, 2])

        def cancel_at_step_2(step: int, steps: int) -> None:
            if "m1" in pack.members and step == 2:
                pack.remove("m1")

        results = pack.run_epoch(cancel_at_step_2)
        assert set(results) == {"m0", "m2"}
        _finish(pack)
        _finish(reference)
        _same_runs(pack, reference, ["m0", "m2"])


class TestAdd:
    def test_a_member_joins_at_an_epoch_boundary(self):
        pack, reference = _pack([0, 2], torch.float64), _pack([0, 2], torch.float64)
        pack.run_epoch()
        reference.run_epoch()
        pack.add("m1", _spec(1), *data(ROWS[1], 1))
        assert pack.progress("m1") == (0, 0, 2)  # 29 training rows, batch 16
        _finish(pack)
        _finish(reference)
        _same_runs(pack, reference, ["m0", "m2"])
        solo = solo64(_spec(1), *data(ROWS[1], 1))
        assert_close_weights(pack.weights("m1"), solo.model.named_tensors(), 1e-9)

    def test_members_share_a_dataset_by_key(self):
        x, y = data(48, 0)
        pack = Pack("cpu")
        for i in range(3):
            pack.add(f"m{i}", _spec(i), x, y, dataset_key="digits")
        assert pack.resident_rows == 48  # one copy of the rows on the device
        reference = _pack([])
        for i in range(3):
            reference.add(f"m{i}", _spec(i), x, y)
        _finish(pack)
        _finish(reference)
        _same_runs(pack, reference, ["m0", "m1", "m2"])

    def test_a_member_refused_for_its_data_leaves_the_pack_as_it_was(self):
        pack = Pack("cpu")
        x, y = data(20, 0)
        with pytest.raises(DataError, match="labels"):
            pack.add("bad", _spec(0), x, y + 5)
        assert pack.members == () and pack.key is None
        other = spec(layers=[dense(4, "tanh"), dense(3, "softmax")])
        pack.add("m0", other, x, y)
        assert pack.key == compatibility_key(other)

    def test_only_compatible_specs_join(self):
        pack = _pack([0])
        for other in (
            spec(layers=[dense(9, "relu"), dense(3, "softmax")]),
            spec(layers=LAYERS, optimizer="sgd"),
            spec(layers=LAYERS, batch_size=8),
            spec(layers=LAYERS, loss="categorical_crossentropy"),
        ):
            with pytest.raises(ConfigError, match="not compatible"):
                pack.add("other", other, *data(20, 1))
        with pytest.raises(ConfigError, match="already in the pack"):
            pack.add("m0", _spec(0), *data(20, 1))


class TestCompatibilityKey:
    def test_members_may_differ_in_everything_but_the_structure(self):
        base = compatibility_key(_spec(0))
        assert base is not None
        assert (
            compatibility_key(
                _spec(
                    3, optimizer={"name": "adam", "learning_rate": 0.5, "amsgrad": True}, epochs=9
                )
            )
            == base
        )
        rate = [dense(8, "relu"), {"type": "dropout", "rate": 0.5}, dense(3, "softmax")]
        assert compatibility_key(spec(layers=rate, validation_split=0.2)) == base

    def test_structure_changes_the_key(self):
        base = compatibility_key(_spec(0))
        assert compatibility_key(spec(layers=[dense(8, "tanh"), LAYERS[1], LAYERS[2]])) != base
        assert compatibility_key(_spec(0, optimizer="rmsprop")) != base
        assert compatibility_key(_spec(0, batch_size=32)) != base

    @pytest.mark.parametrize(
        ("part", "field", "value"),
        [
            ("layer", "kernel_constraint", {"name": "max_norm", "max_value": 2.0}),
            ("layer", "bias_regularizer", {"l1": 0.0, "l2": 0.1}),
            ("loss", "label_smoothing", 0.1),
            ("optimizer", "clipnorm", 1.0),
            ("optimizer", "learning_rate", {"name": "exponential_decay"}),
            ("fit", "class_weight", {"0": 2.0}),
            ("model", "preprocessing", [{"type": "rescaling"}]),
        ],
    )
    def test_what_the_pack_does_not_implement_trains_solo(self, part, field, value):
        s = copy.deepcopy(_spec(0))
        where = {
            "layer": s["model"]["layers"][0],
            "loss": s["compile"]["loss"],
            "optimizer": s["compile"]["optimizer"],
            "fit": s["fit"],
            "model": s["model"],
        }[part]
        where[field] = None if field != "learning_rate" else 0.01
        assert compatibility_key(s) is not None  # the field switched off: still packed
        where[field] = value
        assert compatibility_key(s) is None

    def test_only_the_metrics_the_pack_computes(self):
        s = copy.deepcopy(_spec(0))
        s["compile"]["metrics"] = ["accuracy", "auc"]
        assert compatibility_key(s) is None

    def test_batch_normalization_trains_solo(self):
        s = spec(layers=[dense(8, "relu"), {"type": "batch_normalization"}, dense(3, "softmax")])
        assert compatibility_key(s) is None
        with pytest.raises(ConfigError, match="does not train in a pack"):
            Pack().add("bn", s, *data(20, 0))
