"""A member's outputs are its solo run's: its checkpoint resumes in a new pack bit for bit
(at an epoch's end and in the middle of one), resumes solo, and a solo checkpoint resumes
in a pack; its export has the solo layout and predicts, and evaluates, as the solo run."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch

from fitq.worker.engine import Trainer, TrainingError, load_predictor
from fitq.worker.engine.pack import MemberStatus, Pack
from tests.engine.helpers import assert_weights_equal, dense, spec, without_timing
from tests.engine.pack_helpers import (
    ROWS,
    Float64Trainer,
    assert_close_weights,
    assert_histories_close,
    data,
)

LAYERS = [dense(8, "relu"), {"type": "dropout", "rate": 0.25}, dense(3, "softmax")]


class Interrupt(Exception):
    pass


def _spec(i: int, **kw: Any) -> dict[str, Any]:
    kw.setdefault("epochs", 3)
    return spec(
        layers=LAYERS,
        seed=i,
        optimizer={"name": "adam", "learning_rate": 0.01 * (i + 1), "amsgrad": i == 1},
        validation_split=0.2,
        early_stopping={"monitor": "val_loss", "patience": 5, "restore_best_weights": True},
        **kw,
    )


def _pack(ids: list[int], dtype: torch.dtype = torch.float32, ckpts=None) -> Pack:
    pack = Pack("cpu", dtype)
    for i in ids:
        pack.add(f"m{i}", _spec(i), *data(ROWS[i], i), checkpoint=(ckpts or {}).get(f"m{i}"))
    return pack


def _finish(pack: Pack) -> None:
    while any(not r.done for r in pack.run_epoch().values()):
        pass


def _interrupt_at(step: int):
    def hook(s: int, steps: int) -> None:
        if s == step:
            raise Interrupt

    return hook


class TestResumeInAPack:
    @pytest.mark.parametrize("mid_epoch", [False, True], ids=["epoch_end", "mid_epoch"])
    def test_is_bit_identical_to_the_uninterrupted_pack(self, mid_epoch):
        ids = [0, 1, 2]
        reference = _pack(ids)
        _finish(reference)
        first = _pack(ids)
        first.run_epoch()
        if mid_epoch:  # the round of epoch 2 stops after its 3rd step
            with pytest.raises(Interrupt):
                first.run_epoch(_interrupt_at(3))
            assert [first.progress(f"m{i}")[:2] for i in ids] == [(1, 3), (1, 2), (1, 3)]
        ckpts = {f"m{i}": first.checkpoint(f"m{i}") for i in ids}
        resumed = _pack(ids, ckpts=ckpts)
        _finish(resumed)
        for m in ("m0", "m1", "m2"):
            assert_weights_equal(resumed.weights(m), reference.weights(m))
            assert without_timing(resumed.history(m)) == without_timing(reference.history(m))

    def test_the_interrupted_pack_itself_goes_on(self):
        reference = _pack([0, 2])
        _finish(reference)
        pack = _pack([0, 2])
        with pytest.raises(Interrupt):
            pack.run_epoch(_interrupt_at(2))
        _finish(pack)
        for m in ("m0", "m2"):
            assert_weights_equal(pack.weights(m), reference.weights(m))

    def test_a_checkpoint_of_a_finished_run_is_done_at_once(self):
        pack = _pack([0])
        _finish(pack)
        again = Pack()
        assert again.add("m0", _spec(0), *data(ROWS[0], 0), checkpoint=pack.checkpoint("m0")) is (
            MemberStatus.FINISHED
        )
        assert_weights_equal(again.weights("m0"), pack.weights("m0"))

    def test_another_runs_checkpoint_is_refused(self):
        pack = _pack([0])
        pack.run_epoch()
        ckpt = pack.checkpoint("m0")
        with pytest.raises(TrainingError, match="different spec or seed"):
            Pack().add("m0", _spec(1), *data(ROWS[0], 0), checkpoint=ckpt)
        with pytest.raises(TrainingError, match="rows"):
            Pack().add("m0", _spec(0), *data(ROWS[0] + 5, 0), checkpoint=ckpt)


class TestSoloFormat:
    @pytest.mark.parametrize("mid_epoch", [False, True], ids=["epoch_end", "mid_epoch"])
    def test_a_member_resumes_solo(self, mid_epoch):
        pack = _pack([0, 1], torch.float64)
        if mid_epoch:
            with pytest.raises(Interrupt):
                pack.run_epoch(_interrupt_at(2))
        else:
            pack.run_epoch()
        ckpt = pack.checkpoint("m1")
        _finish(pack)
        solo = Float64Trainer(**_spec(1))
        solo.fit(*data(ROWS[1], 1), resume_from=ckpt)
        assert_close_weights(pack.weights("m1"), solo.model.named_tensors(), 1e-9)
        assert_histories_close(pack.history("m1"), solo.history, 1e-9)

    def test_a_solo_run_resumes_in_a_pack(self):
        ckpts: list[bytes] = []
        solo = Float64Trainer(**_spec(1))

        def keep(epoch: int, step: int, steps: int) -> None:
            if (epoch, step) == (2, 1):
                ckpts.append(solo.checkpoint())

        solo.fit(*data(ROWS[1], 1), on_step_end=keep)
        pack = _pack([0], torch.float64)
        pack.add("m1", _spec(1), *data(ROWS[1], 1), checkpoint=ckpts[0])
        assert pack.progress("m1") == (1, 1, 2)
        _finish(pack)
        assert_close_weights(pack.weights("m1"), solo.model.named_tensors(), 1e-9)
        assert_histories_close(pack.history("m1"), solo.history, 1e-9)


class TestExport:
    def _trained(self) -> tuple[Pack, Trainer, np.ndarray, np.ndarray]:
        s = _spec(0, normalize=True)
        x, y = data(ROWS[0], 0)
        pack = Pack()
        pack.add("m0", s, x * 10 + 3, y)
        pack.add("m1", _spec(1), *data(ROWS[1], 1))
        _finish(pack)
        solo = Trainer(**s, device="cpu")
        solo.fit(x * 10 + 3, y)
        return pack, solo, x * 10 + 3, y

    def test_has_the_solo_layout_and_predicts_as_the_solo_run(self):
        pack, solo, x, _ = self._trained()
        ours = safetensors.torch.load(pack.export("m0", {"fitq_spec": "{}"}))
        theirs = safetensors.torch.load(solo.export_safetensors())
        assert {k: t.shape for k, t in ours.items()} == {k: t.shape for k, t in theirs.items()}
        assert {k: t.dtype for k, t in ours.items()} == {k: t.dtype for k, t in theirs.items()}
        predicted = load_predictor(_spec(0)["model"], pack.export("m0")).predict(x)
        np.testing.assert_allclose(predicted, solo.predict(x), rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(pack.predictor("m0").predict(x), predicted)

    def test_evaluates_as_the_solo_run(self):
        pack, solo, x, y = self._trained()
        ours, theirs = pack.evaluate("m0", x, y), solo.evaluate(x, y)
        assert ours.keys() == theirs.keys()
        for k in ours:
            assert ours[k] == pytest.approx(theirs[k], rel=1e-4, abs=1e-6)
