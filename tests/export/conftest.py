"""Keras (torch backend) and onnxruntime, imported once. The export tests need both: a
missing one fails them with the install line, never skips them."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.support.keras_reference import keras_on_torch


def _require(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(f"the export tests need {module} (pip install -e '.[dev]'): {exc}")


@pytest.fixture(scope="session")
def keras(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """Keras 3 on the torch backend (no TensorFlow), its config dir in a temporary one."""
    with keras_on_torch(tmp_path_factory) as module:
        yield module


@pytest.fixture(scope="session")
def onnxruntime() -> ModuleType:
    return _require("onnxruntime")


@pytest.fixture(scope="session")
def onnx() -> ModuleType:
    return _require("onnx")
