"""The NPZ reader: a zip of ``.npy`` arrays, ``x`` (features) and ``y`` (targets).

Read defensively, without trusting the archive, and counted before allocated:

- the zip's end record is read first: more members than ``MAX_MEMBERS`` or a
  directory over ``MAX_DIRECTORY_BYTES`` is refused before the directory is
  parsed (zipfile makes an object per member);
- the directory's total uncompressed size is checked against a limit
  before anything is decompressed (zip bombs), and each array's header must
  agree with the size of its member, so a forged shape cannot allocate more
  than the archive holds;
- nothing is ever unpickled: an object array is refused from its header
  before its data is touched (and ``allow_pickle=False`` regardless);
- the headers' shapes and dtypes are checked against the limits (features,
  cells, decoded bytes: ``limits.Limits``) before any data is read, then
  ``x`` is decompressed ``READ_CHUNK_BYTES`` at a time into one float32 matrix:
  ingest holds the decoded dataset and one chunk, never ``x`` in its stored
  dtype beside it;
- ``x`` is 2-D ``[n, f]`` (1-D is one feature) of booleans, integers or floats,
  every value finite; ``y`` is 1-D ``[n]`` or 2-D ``[n, k]``, numeric or text.
  Other arrays in the archive are ignored.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from fitq.service.datasets.limits import (
    DEFAULT_MAX_UNCOMPRESSED_BYTES as DEFAULT_MAX_UNCOMPRESSED_BYTES,
)
from fitq.service.datasets.limits import Limits
from fitq.service.datasets.targets import first_nonfinite_row
from fitq.service.errors import InvalidDataset

MAX_MEMBERS = 64
"""Members an NPZ may hold (numpy.savez writes one per array: x, y and a few more)."""
MAX_DIRECTORY_BYTES = 1 << 20
"""The largest zip directory read (bytes): 64 members with names of up to 16 KB."""
READ_CHUNK_BYTES = 8 << 20
"""What is decompressed at a time into the feature matrix (bytes)."""
_END = struct.Struct("<4s4H2LH")
"""The end of central directory record: signature, disks, entries (this disk, all),
directory size and offset, comment length."""
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")
_UNKNOWN_16, _UNKNOWN_32 = 0xFFFF, 0xFFFFFFFF

PICKLED = "NPZ holds pickled objects in {name!r}; fitq never unpickles (save numeric arrays)"


@dataclass
class Arrays:
    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class _Header:
    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype
    size: int  # bytes of the .npy header, before the data


def read_npz(path: Path, limits: Limits) -> Arrays:
    """Read arrays ``x`` and ``y`` of the NPZ at ``path`` (features float32, targets raw)."""
    _check_directory(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise InvalidDataset(f"the file is not a readable NPZ (zip) archive: {e}") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise InvalidDataset(_too_many(len(infos)))
        total = sum(info.file_size for info in infos)
        if total > limits.max_uncompressed_bytes:
            raise InvalidDataset(
                f"NPZ expands to {total} bytes uncompressed, over the limit of "
                f"{limits.max_uncompressed_bytes} bytes (FITQ_MAX_NPZ_UNCOMPRESSED_BYTES); "
                "nothing was decompressed"
            )
        if not any(info.filename.endswith(".npy") for info in infos):
            raise InvalidDataset(
                "the file is a zip archive without .npy arrays, not an NPZ "
                "(numpy.savez(f, x=x, y=y) writes one)"
            )
        members = {info.filename.removesuffix(".npy"): info for info in infos}
        missing = [k for k in ("x", "y") if k not in members]
        if missing:
            found = ", ".join(repr(k) for k in sorted(members)) or "none"
            raise InvalidDataset(
                f"NPZ must hold arrays 'x' and 'y'; missing {' and '.join(map(repr, missing))} "
                f"(found: {found})"
            )
        hx = _header(zf, members["x"], "x")
        hy = _header(zf, members["y"], "y")
        n, f = _check_shapes(hx, hy)
        limits.check_features(f)
        limits.check_size(n, f, target_bytes=_count(hy.shape) * hy.dtype.itemsize)
        x = _read_features(zf, members["x"], hx, n, f)
        y = _read(zf, members["y"], "y")
    return Arrays(x, y)


def _check_directory(path: Path) -> None:
    """Refuse a zip whose end record declares more than ``MAX_MEMBERS`` members or
    a directory over ``MAX_DIRECTORY_BYTES``, before zipfile reads the directory."""
    members, directory = _declared_directory(path)
    if members > MAX_MEMBERS:
        raise InvalidDataset(_too_many(members))
    if directory > MAX_DIRECTORY_BYTES:
        raise InvalidDataset(
            f"the zip's directory is {directory} bytes, over {MAX_DIRECTORY_BYTES}; an NPZ "
            "holds a few arrays (numpy.savez(f, x=x, y=y))"
        )


def _declared_directory(path: Path) -> tuple[int, int]:
    """(members, directory bytes) as the end record (zip64's when there is one) declares."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        tail_size = min(size, _END.size + 0xFFFF)  # the record, then a comment of ≤ 64 KiB
        f.seek(size - tail_size)
        tail = f.read(tail_size)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + _END.size > len(tail):
            raise InvalidDataset("the file is not a readable NPZ (zip) archive: no end record")
        _, _, _, _, members, directory, offset, _ = _END.unpack_from(tail, at)
        if members != _UNKNOWN_16 and _UNKNOWN_32 not in (directory, offset):
            return members, directory
        locator = at - _ZIP64_LOCATOR.size
        if locator < 0 or tail[locator : locator + 4] != b"PK\x06\x07":
            return max(members, _UNKNOWN_16), directory  # a zip64 value without its record
        _, _, end64, _ = _ZIP64_LOCATOR.unpack_from(tail, locator)
        f.seek(end64)
        record = f.read(_ZIP64_END.size)
    if len(record) != _ZIP64_END.size or record[:4] != b"PK\x06\x06":
        return max(members, _UNKNOWN_16), directory
    fields = _ZIP64_END.unpack(record)
    return fields[7], fields[8]


def _too_many(members: int) -> str:
    return (
        f"the zip holds {members} members, over {MAX_MEMBERS}; an NPZ holds a few arrays "
        "(numpy.savez(f, x=x, y=y))"
    )


def _count(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def _header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> _Header:
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise InvalidDataset(f"array {name!r} uses .npy format {version}; save it again")
            header_bytes = f.tell()
    except (ValueError, OSError, zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise InvalidDataset(f"array {name!r} in the NPZ is not a valid .npy array: {e}") from None
    if dtype.hasobject:
        raise InvalidDataset(PICKLED.format(name=name))
    if _count(tuple(shape)) * dtype.itemsize > info.file_size - header_bytes:
        raise InvalidDataset(f"array {name!r} in the NPZ is truncated or corrupt")
    return _Header(tuple(shape), fortran, dtype, header_bytes)


def _check_shapes(hx: _Header, hy: _Header) -> tuple[int, int]:
    if hx.dtype.kind not in "biuf":
        raise InvalidDataset(
            f"x has dtype {hx.dtype}; features must be booleans, integers or floats"
        )
    if hy.dtype.kind not in "biufU":
        raise InvalidDataset(f"y has dtype {hy.dtype}; targets must be numbers or text")
    if len(hx.shape) not in (1, 2):
        hint = ""
        if len(hx.shape) > 2:
            hint = "; flatten it first: x.reshape(len(x), -1)"
        raise InvalidDataset(f"x has shape {hx.shape}; it must be [rows, features]{hint}")
    if len(hy.shape) not in (1, 2):
        raise InvalidDataset(f"y has shape {hy.shape}; it must be [rows] or [rows, targets]")
    n = hx.shape[0]
    f = hx.shape[1] if len(hx.shape) == 2 else 1
    if hy.shape[0] != n:
        raise InvalidDataset(f"x has {n} rows but y has {hy.shape[0]}; they must match")
    if n == 0:
        raise InvalidDataset("the NPZ holds no rows (x is empty)")
    if f == 0:
        raise InvalidDataset("x has no features (shape [n, 0])")
    if len(hy.shape) == 2 and hy.shape[1] == 0:
        raise InvalidDataset("y has no target columns (shape [n, 0])")
    return n, f


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> np.ndarray:
    try:
        with zf.open(info) as f:
            return _load(f)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise InvalidDataset(PICKLED.format(name=name)) from None
        raise InvalidDataset(f"array {name!r} in the NPZ could not be read: {e}") from None
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise InvalidDataset(f"array {name!r} in the NPZ could not be read: {e}") from None


def _load(f: IO[bytes]) -> np.ndarray:
    array = np.lib.format.read_array(f, allow_pickle=False)
    assert isinstance(array, np.ndarray)
    return array


def _read_features(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, header: _Header, n: int, f: int
) -> np.ndarray:
    """x as C-contiguous float32 [n, f], decompressed a chunk at a time; refuses NaN,
    ±Inf and values beyond float32's range, naming the first (by row, then column;
    a Fortran-ordered array is read and checked column by column)."""
    x = np.empty((n, f), dtype=np.float32)
    dtype = header.dtype
    try:
        with zf.open(info) as src:
            _read_exactly(src, header.size)
            if header.fortran_order and f > 1:
                rows = max(1, READ_CHUNK_BYTES // dtype.itemsize)
                for j in range(f):
                    for lo in range(0, n, rows):
                        hi = min(n, lo + rows)
                        block = np.frombuffer(_read_exactly(src, (hi - lo) * dtype.itemsize), dtype)
                        _put(x, lo, j, block.reshape(hi - lo, 1))
            else:
                rows = max(1, READ_CHUNK_BYTES // (f * dtype.itemsize))
                for lo in range(0, n, rows):
                    hi = min(n, lo + rows)
                    data = _read_exactly(src, (hi - lo) * f * dtype.itemsize)
                    _put(x, lo, 0, np.frombuffer(data, dtype).reshape(hi - lo, f))
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise InvalidDataset(f"array 'x' in the NPZ could not be read: {e}") from None
    return x


def _read_exactly(src: IO[bytes], size: int) -> bytes:
    data = src.read(size)
    if len(data) != size:
        raise InvalidDataset("array 'x' in the NPZ is truncated or corrupt")
    return data


def _put(x: np.ndarray, row: int, column: int, block: np.ndarray) -> None:
    """``block`` [r, c] into ``x`` at (row, column) as float32, each value checked."""
    _check_finite(block, row, column, "NaN or infinite")
    target = x[row : row + block.shape[0], column : column + block.shape[1]]
    with np.errstate(over="ignore"):  # overflow becomes ±inf, refused just below
        target[...] = block
    _check_finite(target, row, column, "too large for float32 (beyond ±3.4e38)")


def _check_finite(block: np.ndarray, row: int, column: int, why: str) -> None:
    i = first_nonfinite_row(block)
    if i is not None:
        j = int(np.flatnonzero(~np.isfinite(block[i]))[0])
        raise InvalidDataset(
            f"x[{row + i}, {column + j}] is {why}; features must be finite numbers"
        )
