"""Members, data and the float64 solo reference for the pack tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from fitq.worker.engine import Trainer, optimizers
from fitq.worker.engine.model import Model
from fitq.worker.engine.pack import Pack
from tests.engine.helpers import blobs, dense, spec

LAYERS = [dense(8, "tanh"), dense(3, "softmax")]
ROWS = (50, 37, 64)  # batch 16: 4, 3 and 4 steps, each with a short last batch


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


class Float64Trainer(Trainer):
    """The solo trainer, its model, data and sums in float64 (it has no dtype argument;
    this converts what it builds). The reference a packed member must match to 1e-9."""

    def __init__(self, **kw: Any):
        super().__init__(**kw, device="cpu")
        fused = self.model.fused_activation is not None
        self.model = Model(kw["model"], self.seed, "cpu", torch.float64)
        if fused:
            self.model.fuse_final_activation()
        self.optimizer = optimizers.Optimizer(
            self.optimizer.config, [self.model.flat_params], foreach=False
        )

    def _prepare(self, x: Any, y: Any, validation_data: Any) -> None:
        with default_dtype(torch.float64):
            super()._prepare(x, y, validation_data)
        self._x = self._x.double()
        self._y = self._y if self._y.dtype == torch.int64 else self._y.double()
        if self._xv is not None and self._yv is not None:
            self._xv = self._xv.double()
            self._yv = self._yv if self._yv.dtype == torch.int64 else self._yv.double()

    def fit(self, *args: Any, **kw: Any) -> dict[str, list[float]]:
        with default_dtype(torch.float64):
            return super().fit(*args, **kw)


def data(rows: int, seed: int, features: int = 8, classes: int = 3):
    return blobs(n=rows, features=features, classes=classes, seed=seed)


def member_specs(optimizers_: list[dict[str, Any]], **kw: Any) -> list[dict[str, Any]]:
    """One spec per optimizer config, each with its own seed."""
    kw.setdefault("layers", LAYERS)
    return [spec(optimizer=o, seed=10 + i, **kw) for i, o in enumerate(optimizers_)]


def run_pack(
    specs: list[dict[str, Any]],
    datasets: list[tuple[np.ndarray, np.ndarray]],
    dtype: torch.dtype = torch.float64,
    **add: Any,
) -> Pack:
    """A pack of the specs trained until every member is done."""
    pack = Pack("cpu", dtype)
    for i, (s, (x, y)) in enumerate(zip(specs, datasets, strict=True)):
        pack.add(f"m{i}", s, x, y, **add)
    while any(not r.done for r in pack.run_epoch().values()):
        pass
    return pack


def solo64(s: dict[str, Any], x: np.ndarray, y: np.ndarray, **fit: Any) -> Float64Trainer:
    t = Float64Trainer(**s)
    t.fit(x, y, **fit)
    return t


def assert_close_weights(
    pack_weights: dict[str, torch.Tensor], solo: dict[str, torch.Tensor], rtol: float
) -> None:
    assert pack_weights.keys() == solo.keys()
    for k, v in solo.items():
        torch.testing.assert_close(
            pack_weights[k].double(), v.double(), rtol=rtol, atol=rtol * 1e-3, msg=k
        )


def assert_histories_close(pack_h: dict, solo_h: dict, rtol: float) -> None:
    assert set(pack_h) == set(solo_h)  # (a checkpoint's JSON sorts them)
    for k in pack_h:
        if k in ("seconds", "samples_per_second"):
            continue
        np.testing.assert_allclose(pack_h[k], solo_h[k], rtol=rtol, atol=rtol, err_msg=k)
