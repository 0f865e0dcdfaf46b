"""The artifact store over a real directory (``file://``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fitq.service.store import ArtifactStore, check_key, keys


def _leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if p.name.startswith(".tmp-")]


class TestRoundtrip:
    def test_bytes(self, store: ArtifactStore) -> None:
        store.put_bytes("a/b/c.bin", b"hello")
        assert store.get_bytes("a/b/c.bin") == b"hello"
        assert store.exists("a/b/c.bin")
        with store.open("a/b/c.bin") as f:
            assert f.read() == b"hello"

    def test_file(self, store: ArtifactStore, tmp_path: Path) -> None:
        src = tmp_path / "src.bin"
        src.write_bytes(os.urandom(3 << 20))
        store.put_file("k/blob", src)
        assert store.get_bytes("k/blob") == src.read_bytes()

    def test_overwrite_replaces(self, store: ArtifactStore) -> None:
        store.put_bytes("k", b"old")
        store.put_bytes("k", b"new")
        assert store.get_bytes("k") == b"new"

    def test_array_is_memory_mapped_and_read_only(self, store: ArtifactStore) -> None:
        a = np.arange(12, dtype=np.float32).reshape(3, 4)
        store.save_array("arr/x.npy", a)
        loaded = store.load_array("arr/x.npy")
        assert isinstance(loaded, np.memmap)
        np.testing.assert_array_equal(loaded, a)
        with pytest.raises(ValueError):
            loaded[0, 0] = 1

    def test_local_path_is_under_root(self, store: ArtifactStore) -> None:
        store.put_bytes("d/e", b"x")
        path = store.local_path("d/e")
        assert path is not None and path.read_bytes() == b"x"
        assert path.is_relative_to(store.root)

    def test_plain_path_url_is_local(self, tmp_path: Path) -> None:
        s = ArtifactStore(str(tmp_path / "plain"))
        s.put_bytes("k", b"v")
        assert (tmp_path / "plain" / "k").read_bytes() == b"v"

    def test_missing_key(self, store: ArtifactStore) -> None:
        assert not store.exists("nope")
        with pytest.raises(FileNotFoundError):
            store.get_bytes("nope")

    def test_open_refuses_write_modes(self, store: ArtifactStore) -> None:
        with pytest.raises(ValueError, match="writer"):
            store.open("k", "wb")


class TestDelete:
    def test_delete_and_missing_ok(self, store: ArtifactStore) -> None:
        store.put_bytes("k", b"v")
        store.delete("k")
        store.delete("k")
        assert not store.exists("k")

    def test_delete_prefix(self, store: ArtifactStore) -> None:
        for key in ("ds/1/x.npy", "ds/1/y.npy", "ds/2/x.npy"):
            store.put_bytes(key, b"v")
        store.delete_prefix("ds/1")
        store.delete_prefix("ds/404")
        assert not store.exists("ds/1/x.npy") and not store.exists("ds/1/y.npy")
        assert store.exists("ds/2/x.npy")


class TestAtomicity:
    def test_no_temp_file_left(self, store: ArtifactStore, tmp_path: Path) -> None:
        store.put_bytes("a/k", b"v")
        store.save_array("a/x.npy", np.zeros(3))
        assert _leftovers(Path(store.root)) == []

    def test_failed_write_keeps_old_content(self, store: ArtifactStore) -> None:
        store.put_bytes("a/k", b"old")
        with pytest.raises(RuntimeError), store.writer("a/k") as f:
            f.write(b"half of the new")
            raise RuntimeError("disk on fire")
        assert store.get_bytes("a/k") == b"old"
        assert _leftovers(Path(store.root)) == []

    def test_failed_first_write_leaves_nothing(self, store: ArtifactStore) -> None:
        with pytest.raises(RuntimeError), store.writer("b/k") as f:
            f.write(b"partial")
            raise RuntimeError
        assert not store.exists("b/k")
        assert _leftovers(Path(store.root)) == []

    def test_failed_put_file_keeps_old_content(self, store: ArtifactStore, tmp_path: Path) -> None:
        store.put_bytes("k", b"old")
        with pytest.raises(FileNotFoundError):
            store.put_file("k", tmp_path / "does-not-exist")
        assert store.get_bytes("k") == b"old"


class TestKeys:
    @pytest.mark.parametrize(
        "key",
        [
            "",
            "/etc/passwd",
            "../escape",
            "a/../../b",
            "a//b",
            "a/./b",
            "a\\b",
            "a/",
            ".",
            "a/\x00b",
            "a\nb",
        ],
    )
    def test_refused(self, store: ArtifactStore, key: str) -> None:
        with pytest.raises(ValueError):
            check_key(key)
        with pytest.raises(ValueError):
            store.put_bytes(key, b"x")
        with pytest.raises(ValueError):
            store.exists(key)

    @pytest.mark.parametrize("key", ["x", "datasets/" + "a" * 64 + "/x.npy", "a.b/c-d_e"])
    def test_accepted(self, key: str) -> None:
        assert check_key(key) == key

    def test_nothing_written_outside_root(self, store: ArtifactStore, tmp_path: Path) -> None:
        with pytest.raises(ValueError):
            store.put_bytes("../outside", b"x")
        assert not (tmp_path / "outside").exists()


class TestKeyNames:
    """``store/keys.py``: every key the service writes is a safe key."""

    SHA = "ab" * 32

    def test_every_named_key_is_safe(self) -> None:
        prefix = keys.dataset(self.SHA, label="y", task="regression")
        named = [
            keys.dataset_x(prefix),
            keys.dataset_y(prefix),
            keys.dataset_meta(prefix),
            keys.checkpoint("job", 3, 40, 2, self.SHA),
            keys.model("job", 2),
        ]
        assert [check_key(key) for key in named] == named

    def test_checkpoints_sort_in_training_order(self) -> None:
        positions = [(0, 40), (1, 0), (1, 7), (12, 0)]
        names = [keys.checkpoint("j", e, s, 1, self.SHA) for e, s in positions]
        assert sorted(names) == names
        assert all(n.startswith(keys.checkpoints("j") + "/") for n in names)
        parsed = [keys.CHECKPOINT_NAME.match(n.rsplit("/", 1)[-1]) for n in names]
        assert [(int(m[1]), int(m[2])) for m in parsed if m] == positions

    def test_a_model_per_attempt(self) -> None:
        assert keys.model("j", 1) != keys.model("j", 2)


class TestRemote:
    """The generic fsspec path, through fsspec's in-memory filesystem."""

    @pytest.fixture
    def remote(self, request: pytest.FixtureRequest) -> ArtifactStore:
        return ArtifactStore(f"memory://fitq-test/{request.node.name}")

    def test_roundtrip(self, remote: ArtifactStore, tmp_path: Path) -> None:
        remote.put_bytes("a/b", b"hello")
        assert remote.get_bytes("a/b") == b"hello" and remote.exists("a/b")
        assert remote.local_path("a/b") is None
        src = tmp_path / "f"
        src.write_bytes(b"file")
        remote.put_file("a/f", src)
        assert remote.get_bytes("a/f") == b"file"

    def test_array_from_bytes(self, remote: ArtifactStore) -> None:
        remote.save_array("x.npy", np.arange(4, dtype=np.int64))
        loaded = remote.load_array("x.npy")
        assert not isinstance(loaded, np.memmap) and loaded.tolist() == [0, 1, 2, 3]

    def test_failed_write_uploads_nothing(self, remote: ArtifactStore) -> None:
        remote.put_bytes("k", b"old")
        with pytest.raises(RuntimeError), remote.writer("k") as f:
            f.write(b"new")
            raise RuntimeError
        assert remote.get_bytes("k") == b"old"

    def test_delete(self, remote: ArtifactStore) -> None:
        remote.put_bytes("p/1", b"v")
        remote.put_bytes("p/2", b"v")
        remote.put_bytes("q", b"v")
        remote.delete("q")
        remote.delete("q")
        remote.delete_prefix("p")
        remote.delete_prefix("p")
        assert not remote.exists("p/1") and not remote.exists("q")
