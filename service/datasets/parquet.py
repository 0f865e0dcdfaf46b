"""Parquet files: every column a feature but the label (pandas' stored index
columns are neither), read the way ``tabular`` reads CSV.

Counted before it is allocated: the footer's length is checked before pyarrow
parses it (``MAX_FOOTER_BYTES``); then the footer's row count, every feature
column (decimals included, which decode to 16 bytes a cell) and the label are
checked against the limits before any data page is read. A text label is
counted by its column chunks' uncompressed size and read dictionary-encoded
(codes and the distinct values, not a string per row); a label written with
``DELTA_BYTE_ARRAY``, whose prefix sharing lets a few bytes decode to any
length, is refused. The rows are then read ``BATCH_ROWS`` at a time into one
float32 matrix of the counted size.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fitq.service.datasets.limits import Limits
from fitq.service.datasets.tabular import (
    LABEL_BYTES,
    Table,
    fill,
    is_numeric,
    label_values,
    split_columns,
)
from fitq.service.errors import InvalidDataset

MAX_FOOTER_BYTES = 64 << 20
"""The largest footer parsed (bytes): ~170 bytes a column chunk, so 100,000 columns in
three row groups; pyarrow holds about three times it while parsing."""
BATCH_ROWS = 65_536
"""Rows decoded at a time into the feature matrix."""
_UNBOUNDED_ENCODINGS = frozenset({"DELTA_BYTE_ARRAY"})


def read_parquet(path: Path, *, label: str | None, limits: Limits) -> Table:
    """Read a Parquet file into a ``Table``."""
    try:
        return _read_parquet(path, label, limits)
    except (pa.ArrowException, OSError) as e:
        raise InvalidDataset(f"the Parquet file could not be read: {e}") from None


def _read_parquet(path: Path, label: str | None, limits: Limits) -> Table:
    _check_footer(path)
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise InvalidDataset(f"the file is not a readable Parquet file: {e}") from None
    schema = pf.schema_arrow
    meta = schema.pandas_metadata or {}
    index = {c for c in meta.get("index_columns", []) if isinstance(c, str)}
    names = [n for n in schema.names if n not in index]
    if not names:
        raise InvalidDataset("the Parquet file has no columns")
    label_name, features = split_columns(names, label, "Parquet", "")
    limits.check_features(len(features))
    for name in features:
        t = schema.field(name).type
        if not is_numeric(t):
            raise InvalidDataset(f"column {name!r} has type {t}; feature columns must be numeric")
    n = pf.metadata.num_rows
    if n == 0:
        raise InvalidDataset("the Parquet file has no rows")
    label_type = schema.field(label_name).type
    text = pa.types.is_string(label_type) or pa.types.is_large_string(label_type)
    limits.check_size(n, len(features), target_bytes=_label_bytes(pf, label_name, n, text))
    if text:  # codes and the distinct values, not a string per row
        pf = pq.ParquetFile(path, read_dictionary=[label_name])

    def where(i: int) -> str:
        return f"row {i + 1}"

    x = np.empty((n, len(features)), dtype=np.float32)
    chunks, done = [], 0
    for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=[*features, label_name]):
        if done + batch.num_rows > n:
            raise InvalidDataset(f"the Parquet file holds more rows than its footer's {n}")
        fill(x, done, batch, features, where)
        chunks.append(batch.column(label_name))
        done += batch.num_rows
    if done != n:
        raise InvalidDataset(f"the Parquet file holds {done} rows, its footer says {n}")
    y = label_values(pa.chunked_array(chunks), label_name, where)
    return Table(x, y, features, label_name, where)


def _check_footer(path: Path) -> None:
    """Refuse a footer over ``MAX_FOOTER_BYTES`` before pyarrow parses it."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(size - 8, 0))
        tail = f.read(8)
    if len(tail) == 8 and tail[4:] == b"PAR1":
        (footer,) = struct.unpack("<I", tail[:4])
        if MAX_FOOTER_BYTES < footer <= size - 12:  # past the file's start: pyarrow says so
            raise InvalidDataset(
                f"the Parquet footer is {footer} bytes, over {MAX_FOOTER_BYTES} "
                "(too many columns or row groups)"
            )


def _label_bytes(pf: pq.ParquetFile, label: str, n: int, text: bool) -> int:
    """What the label decodes to: 8 bytes a row, and for text the values as stored
    uncompressed (a dictionary's values once, plain values each)."""
    if not text:
        return n * LABEL_BYTES
    total = n * LABEL_BYTES
    for g in range(pf.metadata.num_row_groups):
        group = pf.metadata.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            if chunk.path_in_schema != label:
                continue
            if _UNBOUNDED_ENCODINGS & set(chunk.encodings):
                raise InvalidDataset(
                    f"label column {label!r} is DELTA_BYTE_ARRAY-encoded, whose size is only "
                    "known once decoded; write it with dictionary or plain encoding"
                )
            total += chunk.total_uncompressed_size
    return total
