"""The NPZ reader: a zip of ``.npy`` arrays, ``x`` (features) and ``y`` (targets).

Read defensively, without trusting the archive:

- nothing is ever unpickled: an object array is refused from its header
  before its data is touched (and ``allow_pickle=False`` regardless);
- the zip directory's total uncompressed size is checked against a limit
  before anything is decompressed (zip bombs), and each array's header must
  agree with the size of its member, so a forged shape cannot allocate more
  than the archive holds;
- ``x`` is 2-D ``[n, f]`` (1-D is one feature) of booleans, integers or floats,
  every value finite; ``y`` is 1-D ``[n]`` or 2-D ``[n, k]``, numeric or text.
  Other arrays in the archive are ignored.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from fitq.service.datasets.targets import first_nonfinite_row
from fitq.service.errors import InvalidDataset

DEFAULT_MAX_UNCOMPRESSED_BYTES = 4 << 30
"""An NPZ whose members add up to more than this, uncompressed, is refused (bytes)."""

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


def read_npz(path: Path, *, max_cells: int | None, max_uncompressed_bytes: int) -> Arrays:
    """Read arrays ``x`` and ``y`` of the NPZ at ``path`` (features float32, targets raw)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise InvalidDataset(f"the file is not a readable NPZ (zip) archive: {e}") from None
    with zf:
        infos = zf.infolist()
        total = sum(info.file_size for info in infos)
        if total > max_uncompressed_bytes:
            raise InvalidDataset(
                f"NPZ expands to {total} bytes uncompressed, over the limit of "
                f"{max_uncompressed_bytes} bytes (FITQ_MAX_NPZ_UNCOMPRESSED_BYTES); nothing "
                "was decompressed"
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
        if max_cells is not None and n * f > max_cells:
            raise InvalidDataset(
                f"dataset too large: {n * f} cells ({n} rows × {f} features), limit {max_cells} "
                "(FITQ_MAX_DATASET_CELLS)"
            )
        x = _read(zf, members["x"], "x").reshape(n, f)
        y = _read(zf, members["y"], "y")
    return Arrays(_features(x), y)


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
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count * dtype.itemsize > info.file_size - header_bytes:
        raise InvalidDataset(f"array {name!r} in the NPZ is truncated or corrupt")
    return _Header(tuple(shape), fortran, dtype)


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


def _features(x: np.ndarray) -> np.ndarray:
    """x as C-contiguous float32; refuses NaN, ±Inf and values beyond float32's range."""
    _check_finite(x, "NaN or infinite")
    with np.errstate(over="ignore"):  # overflow becomes ±inf, refused just below
        x = np.ascontiguousarray(x, dtype=np.float32)
    _check_finite(x, "too large for float32 (beyond ±3.4e38)")
    return x


def _check_finite(x: np.ndarray, why: str) -> None:
    i = first_nonfinite_row(x)
    if i is not None:
        j = int(np.flatnonzero(~np.isfinite(x[i]))[0])
        raise InvalidDataset(f"x[{i}, {j}] is {why}; features must be finite numbers")
