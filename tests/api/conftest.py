"""Helpers of the API tests: files to upload, an upload call, and a snapshot of
everything stored (rows and files) to show that a refused request changed nothing."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from fitq.service.db.engine import session_factory
from fitq.service.db.models import ApiKey, Dataset, Job, JobEpoch

Upload = Callable[..., Awaitable[httpx.Response]]


def csv_bytes(n_rows: int = 30, n_features: int = 4, n_classes: int = 3, sep: str = ",") -> bytes:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_rows, n_features)).round(4)
    y = np.arange(n_rows) % n_classes
    header = sep.join([*(f"f{j}" for j in range(n_features)), "label"])
    lines = [header] + [
        sep.join([*(str(v) for v in row), str(int(t))]) for row, t in zip(x, y, strict=True)
    ]
    return ("\n".join(lines) + "\n").encode()


def parquet_bytes(n_rows: int = 30) -> bytes:
    rng = np.random.default_rng(1)
    table = pa.table(
        {
            "a": rng.normal(size=n_rows),
            "b": rng.normal(size=n_rows),
            "target": [["cat", "dog"][i % 2] for i in range(n_rows)],
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def npz_bytes(x: Any = None, y: Any = None, **extra: Any) -> bytes:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 3)).astype(np.float32) if x is None else x
    y = rng.normal(size=20).astype(np.float32) if y is None else y
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y, **extra)
    return buffer.getvalue()


@pytest.fixture
def upload(client: httpx.AsyncClient, auth_headers: dict[str, str]) -> Upload:
    """``await upload(filename, content, headers=None, **fields)``: POST /v1/datasets."""

    async def _upload(
        filename: str, content: bytes, headers: dict[str, str] | None = None, **fields: str
    ) -> httpx.Response:
        return await client.post(
            "/v1/datasets",
            headers=headers or auth_headers,
            files={"file": (filename, content, "application/octet-stream")},
            data=fields,
        )

    return _upload


@pytest.fixture(autouse=True)
def upload_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary files (uploads in flight) go under ``tmp_path/tmp`` in these tests."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@dataclass(frozen=True)
class Stored:
    keys: int
    datasets: int
    jobs: int
    epochs: int
    files: tuple[str, ...]


@pytest.fixture
def stored(database_url: str, tmp_path: Path) -> Callable[[], Stored]:
    """``stored()``: row counts and every file under ``tmp_path`` (store, home, tmp)."""

    def _stored() -> Stored:
        with session_factory(database_url)() as session:

            def count(model: Any) -> int:
                return int(session.scalar(select(func.count()).select_from(model)) or 0)

            counts = (count(ApiKey), count(Dataset), count(Job), count(JobEpoch))
        files = tuple(
            sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
        )
        return Stored(*counts, files=files)

    return _stored


@dataclass
class Api:
    """The calls most tests make, with the default owner's key."""

    client: httpx.AsyncClient
    headers: dict[str, str]

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.get(path, headers=kw.pop("headers", self.headers), **kw)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.post(path, headers=kw.pop("headers", self.headers), **kw)

    async def delete(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.delete(path, headers=kw.pop("headers", self.headers), **kw)


@pytest.fixture
def api(client: httpx.AsyncClient, auth_headers: dict[str, str]) -> Api:
    return Api(client, auth_headers)
