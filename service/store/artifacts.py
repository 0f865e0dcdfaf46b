"""The artifact store: datasets, checkpoints and trained models, addressed by URL.

``file:///abs/path`` (the default, a plain path works too) or any URL fsspec
understands: ``s3://bucket/prefix`` (s3fs) is the store of a deployment whose
workers run on several machines. Nothing here is specific to one backend beyond
the local fast paths:

- writes are atomic on the local filesystem: a temporary file in the same
  directory, flushed and fsync'd, then ``os.replace`` — a reader sees the old
  content or the new, never half of it, and a failed write leaves the old
  content in place. Object stores give the same guarantee on their own.
- ``local_path`` hands numpy the real file so arrays are memory-mapped
  instead of read; from a remote store an array is streamed into memory
  chunk by chunk (never the whole file as bytes first).

S3 (``s3://``): ``ArtifactStore.from_settings`` passes ``FITQ_S3_ENDPOINT_URL``
(MinIO, Ceph, moto, … — path-style addressing) and turns s3fs's listings cache
off, since other processes write the same bucket. Credentials and region come
the standard AWS way (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``, an instance role, …), never from fitq's settings.

Keys are relative POSIX paths chosen by the service, every one named in
``keys.py`` (``datasets/<sha256>/x.npy``), never derived from a client's file
name; ``..``, absolute paths, backslashes, empty or ``.`` parts and control
characters are refused with ``ValueError`` (a bug of ours, not a client error).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem

if TYPE_CHECKING:
    from fitq.service.settings import Settings

COPY_CHUNK_BYTES = 1 << 20
S3_PROTOCOLS = ("s3", "s3a")
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".part"
"""A local write in progress (``writer``): ``.tmp-<random>.part`` beside its target.
One that a crash left behind is garbage (``store/gc.py``)."""


@dataclass(frozen=True)
class StoredObject:
    """One stored key, as a listing sees it."""

    key: str
    size: int
    modified: datetime
    """When it was last written (UTC): the filesystem's mtime, S3's LastModified."""


def storage_options(url: str, *, s3_endpoint_url: str | None = None) -> dict[str, Any]:
    """The fsspec options for the store at ``url``: none for a local or memory
    store; for S3 no listings cache (other machines write the bucket too) and,
    when given, a custom endpoint with path-style addressing (MinIO and co.)."""
    protocol, _ = fsspec.core.split_protocol(url)
    if protocol not in S3_PROTOCOLS:
        return {}
    options: dict[str, Any] = {"use_listings_cache": False}
    if s3_endpoint_url:
        options["endpoint_url"] = s3_endpoint_url
        options["config_kwargs"] = {"s3": {"addressing_style": "path"}}
    return options


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative POSIX path, else raise ``ValueError``."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"store key must be a non-empty string, got {key!r}")
    if "\\" in key or key.startswith("/") or any(ord(c) < 0x20 for c in key):
        raise ValueError(f"store key {key!r} must be a relative POSIX path")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"store key {key!r} has an empty, '.' or '..' part")
    return key


class ArtifactStore:
    """Bytes and numpy arrays under one root URL, by relative key."""

    def __init__(self, url: str, **options: Any):
        fs, root = fsspec.core.url_to_fs(url, **options)
        self.url = url
        self.fs: fsspec.AbstractFileSystem = fs
        self._local = isinstance(fs, LocalFileSystem)
        if self._local:
            self.root = str(Path(root).resolve())
            Path(self.root).mkdir(parents=True, exist_ok=True)
        else:
            self.root = root.rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> ArtifactStore:
        """The store of ``settings``: its URL with the options it needs (S3 endpoint)."""
        url = settings.resolved_storage_url
        return cls(url, **storage_options(url, s3_endpoint_url=settings.s3_endpoint_url))

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    def _path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    # -- writing ------------------------------------------------------------

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[IO[bytes]]:
        """A binary file to write ``key`` through; it becomes visible only on success.

        Locally the data goes to a temporary file beside the target, which is
        fsync'd and renamed over it when the block exits normally, and removed
        when it raises. For a remote store it is spooled to a local temporary
        file and uploaded in one piece on success, so a failed write uploads
        nothing.
        """
        path = self._path(key)
        if not self._local:
            with tempfile.TemporaryDirectory(prefix="fitq-upload-") as spool:
                local = os.path.join(spool, "part")
                with open(local, "wb") as f:
                    yield f
                self.fs.put_file(local, path)
            return
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(directory)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        with self.writer(key) as f:
            f.write(data)

    def put_file(self, key: str, local_path: str | os.PathLike[str]) -> None:
        """Store a copy of the local file ``local_path`` under ``key``."""
        if not self._local:
            self.fs.put_file(os.fspath(local_path), self._path(key))
            return
        with open(local_path, "rb") as src, self.writer(key) as dst:
            shutil.copyfileobj(src, dst, COPY_CHUNK_BYTES)

    def save_array(self, key: str, array: np.ndarray) -> None:
        """Store ``array`` as a ``.npy`` file (never pickled)."""
        with self.writer(key) as f:
            np.save(f, array, allow_pickle=False)

    # -- reading ------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        """The content of ``key``; ``FileNotFoundError`` when missing."""
        with self.open(key) as f:
            return f.read()

    def open(self, key: str, mode: str = "rb") -> IO[bytes]:
        """Open ``key`` for reading (``"rb"``); write through ``writer`` instead."""
        if mode != "rb":
            raise ValueError(f"open() reads only (mode 'rb'), got {mode!r}; use writer()")
        if self._local:
            return open(self._path(key), "rb")
        return self.fs.open(self._path(key), "rb")  # type: ignore[no-any-return]

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        return bool(self.fs.exists(self._path(key)))

    def local_path(self, key: str) -> Path | None:
        """The filesystem path of ``key`` for a local store, ``None`` for a remote one."""
        return Path(self._path(key)) if self._local else None

    def load_array(self, key: str) -> np.ndarray:
        """The ``.npy`` array under ``key``: memory-mapped read-only when local,
        else streamed from the store into one array (numpy reads a file object
        in chunks, so the file's bytes are never held beside the array)."""
        local = self.local_path(key)
        if local is not None:
            array: Any = np.load(local, allow_pickle=False, mmap_mode="r")
        else:
            with self.open(key) as f:
                array = np.load(f, allow_pickle=False)
        if not isinstance(array, np.ndarray):
            raise ValueError(f"{key} does not hold a single array")
        return array

    # -- listing ------------------------------------------------------------

    def objects(self, prefix: str = "") -> list[StoredObject]:
        """Every key under the folder ``prefix`` (default: the whole store), with
        its size and time, temporary files included; empty when there is none."""
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        try:
            found = self.fs.find(base, detail=True, withdirs=False)
        except FileNotFoundError:
            return []
        start = len(self.root) + 1
        listed = []
        for path, info in sorted(found.items()):
            if info.get("type") == "directory":
                continue
            listed.append(
                StoredObject(str(path)[start:], int(info.get("size") or 0), _modified(info))
            )
        return listed

    # -- deleting -----------------------------------------------------------

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is fine."""
        path = self._path(key)
        if self._local:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(path)

    def delete_prefix(self, prefix: str) -> None:
        """Remove every key under the folder ``prefix``; a missing one is fine."""
        path = self._path(prefix.rstrip("/"))
        if self._local:
            shutil.rmtree(path, ignore_errors=True)
            return
        with contextlib.suppress(FileNotFoundError):
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)

    def remove_empty_folders(self, key: str) -> None:
        """Remove the folders above ``key`` that are left empty, up to the root
        (local stores; an object store has no folders)."""
        if not self._local:
            return
        folder = Path(self._path(key)).parent
        while folder != Path(self.root) and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:  # not empty, or gone
                return
            folder = folder.parent


def _modified(info: dict[str, Any]) -> datetime:
    """An fsspec listing entry's last write, as an aware UTC time."""
    mtime = info.get("mtime", info.get("LastModified"))
    if isinstance(mtime, datetime):
        return mtime if mtime.tzinfo is not None else mtime.replace(tzinfo=UTC)
    if mtime is None:
        raise ValueError(f"the store gives no time for {info.get('name')!r}")
    return datetime.fromtimestamp(float(mtime), UTC)


def _fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
