"""One store interface, two backends: every behaviour the service relies on
holds for ``file://`` and for ``s3://`` (a real S3 protocol server)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fitq.service.settings import Settings
from fitq.service.store import ArtifactStore, storage_options
from tests.deploy.conftest import S3


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "file":
        return ArtifactStore((tmp_path / "store").as_uri())
    s3: S3 = request.getfixturevalue("s3")
    return s3.store()


class TestContract:
    def test_bytes_roundtrip(self, store: ArtifactStore) -> None:
        store.put_bytes("jobs/j1/model.safetensors", b"weights")
        assert store.exists("jobs/j1/model.safetensors")
        assert store.get_bytes("jobs/j1/model.safetensors") == b"weights"
        assert not store.exists("jobs/j1/other")

    def test_missing_key_is_file_not_found(self, store: ArtifactStore) -> None:
        with pytest.raises(FileNotFoundError):
            store.get_bytes("nothing/here")

    def test_put_file_streams_a_local_file(self, store: ArtifactStore, tmp_path: Path) -> None:
        src = tmp_path / "big.bin"
        payload = np.random.default_rng(0).bytes(6 * 1024 * 1024 + 7)  # over one S3 part
        src.write_bytes(payload)
        store.put_file("datasets/abc/raw", src)
        assert store.get_bytes("datasets/abc/raw") == payload

    def test_arrays_roundtrip_without_pickle(self, store: ArtifactStore) -> None:
        x = np.arange(12, dtype=np.float32).reshape(4, 3)
        store.save_array("datasets/abc/x.npy", x)
        loaded = store.load_array("datasets/abc/x.npy")
        assert loaded.dtype == np.float32 and loaded.shape == (4, 3)
        np.testing.assert_array_equal(loaded, x)

    def test_failed_write_leaves_the_old_value(self, store: ArtifactStore) -> None:
        store.put_bytes("k", b"old")
        with pytest.raises(RuntimeError), store.writer("k") as f:
            f.write(b"new")
            raise RuntimeError("boom")
        assert store.get_bytes("k") == b"old"

    def test_delete_and_delete_prefix(self, store: ArtifactStore) -> None:
        for key in ("d/1", "d/sub/2", "keep"):
            store.put_bytes(key, b"v")
        store.delete("keep")
        store.delete("keep")  # missing is fine
        store.delete_prefix("d")
        store.delete_prefix("d")
        assert not any(store.exists(k) for k in ("d/1", "d/sub/2", "keep"))

    def test_bad_keys_are_refused(self, store: ArtifactStore) -> None:
        with pytest.raises(ValueError):
            store.put_bytes("../escape", b"x")


class TestS3Settings:
    def test_from_settings_uses_the_endpoint(self, s3: S3, tmp_path: Path) -> None:
        settings = Settings(
            home=tmp_path, storage_url=s3.url, s3_endpoint_url=s3.endpoint_url, api_key=None
        )
        store = ArtifactStore.from_settings(settings)
        store.put_bytes("a", b"1")
        assert s3.store().get_bytes("a") == b"1"
        assert store.local_path("a") is None

    def test_listings_cache_is_off_so_other_writers_are_seen(self, s3: S3) -> None:
        reader, writer = s3.store(), s3.store()
        assert not reader.exists("late/key")
        writer.put_bytes("late/key", b"x")
        assert reader.exists("late/key")

    def test_options_are_only_for_s3(self) -> None:
        assert storage_options("file:///tmp/x", s3_endpoint_url="http://h:9000") == {}
        assert storage_options("/tmp/x") == {}
        options = storage_options("s3://b/p", s3_endpoint_url="http://h:9000")
        assert options["endpoint_url"] == "http://h:9000"
        assert options["use_listings_cache"] is False
        assert "endpoint_url" not in storage_options("s3://b/p")
