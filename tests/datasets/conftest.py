"""Fixtures for the dataset tests: files written on the spot, and a real file store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fitq.service.store import ArtifactStore


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore((tmp_path / "store").as_uri())


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str | bytes], Path]:
    """write(name, content) → the path of a file holding ``content`` (text is UTF-8)."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return _write


@pytest.fixture
def npz_file(tmp_path: Path) -> Callable[..., Path]:
    """npz_file(name="d.npz", compressed=False, **arrays) → the path of an NPZ."""

    def _npz(name: str = "d.npz", compressed: bool = False, **arrays: Any) -> Path:
        path = tmp_path / name
        with open(path, "wb") as f:
            (np.savez_compressed if compressed else np.savez)(f, **arrays)
        return path

    return _npz


@pytest.fixture
def parquet_file(tmp_path: Path) -> Callable[..., Path]:
    """parquet_file(columns: dict, name="d.parquet") → the path of a Parquet file."""

    def _parquet(columns: dict[str, Any], name: str = "d.parquet") -> Path:
        path = tmp_path / name
        pq.write_table(pa.table(columns), path)
        return path

    return _parquet
