"""Keras 3 on the torch backend, the reference the tests compare fitq against.

Keras picks its backend once, when first imported, so every test that needs it
imports it here: ``KERAS_BACKEND=torch`` and a temporary ``KERAS_HOME`` (no config
written to the user's home). A missing keras fails the test with the install line,
never skips it."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import pytest

IGNORE_ARRAY_COPY_WARNING = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
"""Keras' torch backend turns tensors into numpy with ``np.array(tensor)``, and numpy 2
warns that torch's ``Tensor.__array__`` takes no copy keyword (third-party; values
unaffected)."""


@contextmanager
def keras_on_torch(
    tmp_path_factory: pytest.TempPathFactory, *, floatx: str | None = None
) -> Iterator[ModuleType]:
    """Keras imported on the torch backend; with ``floatx`` it computes in that dtype
    until the block ends (Keras' default restored then)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERAS_BACKEND", "torch")
        mp.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras_home")))
        try:
            module = importlib.import_module("keras")
        except ImportError as exc:
            pytest.fail(f"these tests need keras (pip install -e '.[dev]'): {exc}")
    assert module.backend.backend() == "torch", "keras was imported before with another backend"
    if floatx is None:
        yield module
        return
    before = module.config.floatx()
    module.config.set_floatx(floatx)
    try:
        yield module
    finally:
        module.config.set_floatx(before)
