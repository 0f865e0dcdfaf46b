"""Unsafe input is refused by construction: Keras JSON naming anything but the
supported layers, NPZ zip bombs (refused from the zip directory, before anything
is decompressed), pickles, and files whose name lies about their bytes."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fitq.service.datasets import npz
from fitq.service.datasets.limits import Limits
from fitq.service.errors import InvalidDataset
from fitq.service.settings import Settings
from tests.api.conftest import Api, Stored, Upload, csv_bytes, npz_bytes, parquet_bytes
from tests.spec.conftest import dense, keras_layer, keras_model

pytestmark = pytest.mark.anyio

# -- Keras JSON -------------------------------------------------------------------------


def keras_body(layer: dict[str, Any]) -> dict[str, Any]:
    return {
        "keras_json": keras_model(dense(8, "relu"), layer, dense(3, "softmax")),
        "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy"},
        "fit": {"epochs": 1},
        "dataset_id": "iris",
    }


UNSUPPORTED_CLASSES = [
    "Lambda",  # a Python function, serialized: never run, never even looked at
    "TFOpLambda",
    "MyCustomLayer",
    "Conv2D",
    # names of the converter's own attributes: an unknown class must not reach them
    "normalization",
    "_init__",
    "_class__",
    "_repr__",
    "fail",
    "convert",
    "take",
    "activation",
]


class TestKerasJson:
    @pytest.mark.parametrize("class_name", UNSUPPORTED_CLASSES)
    async def test_a_layer_class_fitq_does_not_know_is_refused_by_name(
        self, api: Api, stored: Callable[[], Stored], class_name: str
    ) -> None:
        before = stored()
        layer = keras_layer(class_name, function="lambda x: __import__('os').system('id')")
        r = await api.post("/v1/jobs", json=keras_body(layer))
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["loc"] == ["body", "keras_json", "layers", 1]
        assert f"layer 1 ({class_name} " in body["detail"]
        assert "is not supported; fitq supports: Dense" in body["detail"]
        assert stored() == before

    async def test_a_registered_custom_class_is_refused_even_with_a_known_name(
        self, api: Api
    ) -> None:
        layer = {
            **dense(4, "relu"),
            "module": "my_package.layers",
            "registered_name": "Custom>Dense",
        }
        r = await api.post("/v1/jobs", json=keras_body(layer))
        assert r.status_code == 422
        assert "is not supported" in r.json()["detail"]


# -- NPZ zip bombs ------------------------------------------------------------------------

CENTRAL_DIRECTORY = b"PK\x01\x02"
CD_UNCOMPRESSED_SIZE = 24  # offset of the 4-byte uncompressed size in a central directory entry


def with_declared_sizes(archive: bytes, size: int) -> bytes:
    """``archive`` with every central directory entry declaring ``size`` bytes uncompressed."""
    data = bytearray(archive)
    at = data.find(CENTRAL_DIRECTORY)
    assert at >= 0
    while at >= 0:
        struct.pack_into("<I", data, at + CD_UNCOMPRESSED_SIZE, size)
        at = data.find(CENTRAL_DIRECTORY, at + 4)
    return bytes(data)


def real_bomb(megabytes: int) -> bytes:
    """An honest NPZ of ``megabytes`` MiB of zeros, compressed to a few hundred KiB."""
    x = np.zeros((megabytes * 256, 1024), dtype=np.float32)
    y = np.zeros(len(x), dtype=np.int64)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=x, y=y)
    return buffer.getvalue()


@pytest.fixture
def member_opens(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Names of the zip members opened (read, decompressed) while the test runs."""
    opened: list[str] = []
    original = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, name: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if mode == "r":  # the test's own archives are written with mode "w"
            opened.append(getattr(name, "filename", name))
        return original(self, name, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    yield opened


class TestNpzBombs:
    BOMB_MIB = 64
    LIMIT_BYTES = 1 << 20

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"max_npz_uncompressed_bytes": self.LIMIT_BYTES})

    async def test_a_real_bomb_is_refused_from_its_directory(
        self, upload: Upload, stored: Callable[[], Stored], member_opens: list[str]
    ) -> None:
        bomb = real_bomb(self.BOMB_MIB)
        assert len(bomb) < self.BOMB_MIB * 1024 * 1024 // 100  # it really is a bomb
        before = stored()
        r = await upload("bomb.npz", bomb)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert f"over the limit of {self.LIMIT_BYTES} bytes" in detail
        assert "FITQ_MAX_NPZ_UNCOMPRESSED_BYTES" in detail
        assert member_opens == []  # not one byte decompressed
        assert stored() == before

    async def test_an_honest_npz_under_the_limit_still_works(self, upload: Upload) -> None:
        r = await upload("small.npz", npz_bytes())
        assert r.status_code == 201, r.text


class TestForgedDirectory:
    async def test_a_directory_declaring_gigabytes_is_refused_at_the_default_limit(
        self, upload: Upload, stored: Callable[[], Stored], member_opens: list[str]
    ) -> None:
        forged = with_declared_sizes(npz_bytes(), 0xFFFF_FFF0)  # ~4 GiB per member
        before = stored()
        r = await upload("forged.npz", forged)
        assert r.status_code == 422, r.text
        assert "FITQ_MAX_NPZ_UNCOMPRESSED_BYTES" in r.json()["detail"]
        assert member_opens == []
        assert stored() == before

    async def test_a_directory_declaring_too_little_cannot_grow_an_array(
        self, upload: Upload, stored: Callable[[], Stored]
    ) -> None:
        """A header claiming more elements than the member's declared size holds
        is refused before an array is allocated (zipfile never reads past it)."""
        honest = npz_bytes(x=np.zeros((5000, 8), np.float32), y=np.zeros(5000, np.float32))
        before = stored()
        r = await upload("shrunk.npz", with_declared_sizes(honest, 200))
        assert r.status_code == 422, r.text
        assert "array 'x' in the NPZ" in r.json()["detail"]
        assert stored() == before

    def test_read_npz_opens_no_member_of_a_bomb(
        self, tmp_path: Path, member_opens: list[str]
    ) -> None:
        path = tmp_path / "bomb.npz"
        path.write_bytes(with_declared_sizes(npz_bytes(), 0x7FFF_FFFF))
        with pytest.raises(InvalidDataset, match="over the limit of 1000 bytes"):
            npz.read_npz(path, Limits(max_uncompressed_bytes=1000))
        assert member_opens == []


# -- bytes, not names ----------------------------------------------------------------------

PICKLE_OF_ONE = b"\x80\x04K\x01."  # pickle protocol 4 of the int 1; written out, never unpickled


def object_npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.array([[{"a": 1}]], dtype=object), y=np.zeros(1))
    return buffer.getvalue()


def torch_style_zip() -> bytes:
    """The layout of a ``torch.save`` file: a zip around a pickle (never opened here)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("archive/data.pkl", PICKLE_OF_ONE)
        zf.writestr("archive/version", "3\n")
    return buffer.getvalue()


def zip_without_arrays() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("readme.txt", "hello")
    return buffer.getvalue()


class TestBytesNotNames:
    @pytest.mark.parametrize(
        ("filename", "content", "words"),
        [
            ("x.npz", csv_bytes(), "file named 'x.npz' is not an NPZ (zip) archive: its content "
             "looks like CSV text"),
            ("x.csv", npz_bytes(), "file named 'x.csv' is not CSV text: its content looks like "
             "an NPZ (zip) archive"),
            ("x.parquet", npz_bytes(), "is not a Parquet file"),
            ("x.csv", parquet_bytes(), "its content looks like a Parquet file"),
            ("model.npz", PICKLE_OF_ONE, "a Python pickle; fitq never unpickles"),
            ("model.pkl", PICKLE_OF_ONE, "a Python pickle; fitq never unpickles"),
            ("model.pt", torch_style_zip(), "without .npy arrays"),
            ("x.npz", object_npz(), "fitq never unpickles"),
            ("x.npz", zip_without_arrays(), "without .npy arrays"),
            ("x.npy", np.lib.format.magic(1, 0) + b"\x00" * 10, "single .npy array"),
        ],
    )  # fmt: skip
    async def test_a_mislabelled_or_unsafe_file_gets_a_clear_422(
        self,
        upload: Upload,
        stored: Callable[[], Stored],
        filename: str,
        content: bytes,
        words: str,
    ) -> None:
        before = stored()
        r = await upload(filename, content)
        assert r.status_code == 422, r.text
        assert words in r.json()["detail"]
        assert stored() == before

    @pytest.mark.parametrize(
        ("filename", "content", "fmt"),
        [
            ("data.txt", csv_bytes(), "csv"),
            ("data", csv_bytes(), "csv"),
            ("data.bin", npz_bytes(), "npz"),
            ("data", npz_bytes(), "npz"),
            ("data.dat", parquet_bytes(), "parquet"),
        ],
    )
    async def test_a_name_that_claims_nothing_leaves_it_to_the_bytes(
        self, upload: Upload, filename: str, content: bytes, fmt: str
    ) -> None:
        r = await upload(filename, content)
        assert r.status_code == 201, r.text
        assert r.json()["format"] == fmt


def test_the_module_says_what_it_refuses() -> None:
    """The NPZ reader's contract, as its docstring states it (kept in step with the tests)."""
    assert "before anything is decompressed" in (npz.__doc__ or "")
    assert json.dumps(npz.DEFAULT_MAX_UNCOMPRESSED_BYTES) == str(4 << 30)
