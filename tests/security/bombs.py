"""Files that are small on the wire and huge once decoded, written without ever
holding their decoded form (so a test or a benchmark can make a 4 GB bomb in
a few MB of memory). ``tests/security/test_ingest_memory.py`` uploads small
ones; ``bench/ingest_memory.py`` the sizes the default limits allow.

- :func:`npz_zeros`: an NPZ whose ``x`` is ``rows × cols`` zeros, deflated
  (~1000:1);
- :func:`zip_members`: a zip of ``count`` empty members (a zip directory is
  parsed into one object per member);
- :func:`parquet_decimal`: ``rows × cols`` decimal128 cells of one value
  (dictionary-encoded: a few bytes per row group);
- :func:`parquet_label`: a text label of ``rows`` distinct long strings that
  share a prefix (zstd keeps one copy of it);
- :func:`csv_cells`: a CSV of ``cols`` columns of ``0`` up to ``size`` bytes.
"""

from __future__ import annotations

import decimal
import struct
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CHUNK_BYTES = 8 << 20
"""What the writers hold at a time (bytes)."""


def npz_zeros(path: Path, rows: int, cols: int, dtype: str = "<f8") -> Path:
    """An NPZ with ``x`` = zeros ``[rows, cols]`` of ``dtype`` and ``y`` = zeros ``[rows]``."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        _npy_zeros(zf, "x.npy", np.dtype(dtype), (rows, cols))
        _npy_zeros(zf, "y.npy", np.dtype("<i8"), (rows,))
    return path


def _npy_zeros(zf: zipfile.ZipFile, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    header = {"descr": dtype.str, "fortran_order": False, "shape": shape}
    total = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    zeros = bytes(min(CHUNK_BYTES, total))
    with zf.open(name, "w", force_zip64=True) as f:
        np.lib.format.write_array_header_2_0(f, header)  # type: ignore[attr-defined]
        left = total
        while left:
            n = min(left, len(zeros))
            f.write(zeros[:n])
            left -= n


def zip_members(path: Path, count: int) -> Path:
    """A zip of ``count`` empty stored members (a zip64 end record past 65,535)."""
    names = [f"{i:07x}".encode() for i in range(count)]
    with open(path, "wb") as out:
        offsets = []
        for name in names:
            offsets.append(out.tell())
            # local file header: signature, version, flags, method, time, date, crc, sizes, name
            header = (b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0)
            out.write(struct.pack("<4s5H3L2H", *header))
            out.write(name)
        directory_at = out.tell()
        for name, offset in zip(names, offsets, strict=True):
            out.write(
                struct.pack(
                    "<4s6H3L5H2L",
                    b"PK\x01\x02", 20, 20, 0, 0, 0, 0,  # made by, needed, flags, method, time, date
                    0, 0, 0,  # crc, compressed, uncompressed
                    len(name), 0, 0, 0, 0,  # name, extra, comment, disk, internal attributes
                    0, offset,  # external attributes, local header offset
                )
            )  # fmt: skip
            out.write(name)
        directory_size = out.tell() - directory_at
        zip64_at = out.tell()
        out.write(
            struct.pack(
                "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count,
                directory_size, directory_at,
            )
        )  # fmt: skip
        out.write(struct.pack("<4sLQL", b"PK\x06\x07", 0, zip64_at, 1))
        short = min(count, 0xFFFF)
        out.write(
            struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, short, short, 0xFFFFFFFF, 0xFFFFFFFF, 0)
        )
    return path


def parquet_decimal(path: Path, rows: int, cols: int, rows_per_group: int = 100_000) -> Path:
    """``cols`` decimal128(38, 2) feature columns of one value and an integer label."""
    value = decimal.Decimal("1.25")
    group = min(rows, rows_per_group)
    table = pa.table(
        {
            **{f"d{j}": pa.array([value] * group, pa.decimal128(38, 2)) for j in range(cols)},
            "label": pa.array(np.zeros(group, dtype=np.int64)),
        }
    )
    with pq.ParquetWriter(path, table.schema) as writer:
        left = rows
        while left:
            n = min(left, group)
            writer.write_table(table.slice(0, n))
            left -= n
    return path


def parquet_label(path: Path, rows: int, label_bytes: int, rows_per_batch: int = 2_000) -> Path:
    """One zero feature and a text label of ``rows`` distinct ``label_bytes``-byte strings."""
    prefix = "a" * (label_bytes - 12)
    schema = pa.schema({"f": pa.float32(), "label": pa.string()})
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for lo in range(0, rows, rows_per_batch):
            n = min(rows_per_batch, rows - lo)
            labels = [f"{prefix}{i:012d}" for i in range(lo, lo + n)]
            batch = {"f": np.zeros(n, dtype=np.float32), "label": labels}
            writer.write_table(pa.table(batch, schema=schema))
    return path


def csv_cells(path: Path, size: int, cols: int) -> Path:
    """A CSV of ``cols`` columns (the last the label) of ``0``, ``size`` bytes at most."""
    header = (",".join(f"c{j}" for j in range(cols)) + "\n").encode()
    row = (",".join(["0"] * cols) + "\n").encode()
    block = row * max(1, CHUNK_BYTES // len(row))
    with open(path, "wb") as out:
        out.write(header)
        left = size - len(header)
        while left >= len(row):
            n = min(left // len(row), len(block) // len(row)) * len(row)
            out.write(block[:n])
            left -= n
    return path
