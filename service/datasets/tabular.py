"""CSV, TSV and Parquet readers: a header of named columns, one of them the label.

Both give a ``Table``: the feature columns as one float32 matrix and the
label column as a 1-D numpy array in its own type (``targets`` decides what
it means). Every feature column must be numeric (integers, floats or
booleans); an empty cell, text, NaN or ±Inf is refused, naming the row and the
column. Rows are numbered as the user sees them: for CSV/TSV the line of the
file (the header is row 1), for Parquet the data row counted from 1.

CSV is parsed by pyarrow with the feature columns typed float32 up front
(one pass, 4 bytes a cell); only when that fails is the file read again, more
slowly, to say where.
"""

from __future__ import annotations

import contextlib
import csv
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from fitq.service.datasets.targets import Where
from fitq.service.errors import InvalidDataset

NUMBER = r"^\s*[+-]?((\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|nan|inf|infinity)\s*$"
"""What pyarrow parses as a float (used only to find the cell that it did not)."""


@dataclass
class Table:
    x: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    label: str
    where: Where


# -- CSV / TSV --------------------------------------------------------------------------


def read_text(path: Path, *, delimiter: str, label: str | None, max_cells: int | None) -> Table:
    """Read a CSV (``delimiter=","``) or TSV (``"\\t"``) file with a header row."""
    kind = "TSV" if delimiter == "\t" else "CSV"
    try:
        return _read_text(path, delimiter, label, max_cells, kind)
    except (pa.ArrowException, csv.Error) as e:
        raise InvalidDataset(f"the file could not be read as {kind}: {e}") from None


def _read_text(
    path: Path, delimiter: str, label: str | None, max_cells: int | None, kind: str
) -> Table:
    names = _header(path, delimiter)
    label_name, features = _split_columns(names, label, kind, delimiter)

    def where(i: int) -> str:
        return f"row {_line_of_record(path, i + 2)}"

    ragged: list[pa_csv.InvalidRow] = []

    def on_invalid(row: pa_csv.InvalidRow) -> str:
        ragged.append(row)
        return "error"

    try:
        table = pa_csv.read_csv(
            path,
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
            convert_options=_convert_options({n: pa.float32() for n in features}),
        )
    except pa.ArrowInvalid as e:
        raise _diagnose(path, delimiter, names, features, ragged, e, kind) from None
    if table.num_rows == 0:
        raise InvalidDataset(f"the {kind} file has a header row but no data rows")
    _check_cells(table.num_rows, len(features), max_cells)
    x = _feature_matrix(table, features, where)
    y = _label_values(table.column(label_name), label_name, where)
    return Table(x, y, features, label_name, where)


def _convert_options(column_types: dict[str, pa.DataType]) -> pa_csv.ConvertOptions:
    return pa_csv.ConvertOptions(
        column_types=column_types,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )


def _header(path: Path, delimiter: str) -> list[str]:
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        for row in csv.reader(f, delimiter=delimiter):
            if row:
                return row
    raise InvalidDataset("the file is empty")


def _split_columns(
    names: list[str], label: str | None, kind: str, delimiter: str
) -> tuple[str, list[str]]:
    """The label column (default the last) and the feature columns."""
    twice = [n for n, c in Counter(names).items() if c > 1]
    if twice:
        raise InvalidDataset(f"column name {twice[0]!r} appears more than once in the header")
    if len(names) < 2:
        hint = ""
        if delimiter == "," and any(sep in names[0] for sep in ";|\t"):
            hint = " (fitq reads comma- or tab-separated files; this header uses another separator)"
        raise InvalidDataset(
            f"the {kind} file has a single column {names[0]!r}; it needs at least one feature "
            f"column and a label column{hint}"
        )
    if label is None:
        label = names[-1]
    elif label not in names:
        raise InvalidDataset(
            f"label column {label!r} is not in the file; its columns are: {_listing(names)}",
            loc=["body", "label"],
        )
    return label, [n for n in names if n != label]


def _listing(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def _diagnose(
    path: Path,
    delimiter: str,
    names: list[str],
    features: list[str],
    ragged: list[pa_csv.InvalidRow],
    error: pa.ArrowInvalid,
    kind: str,
) -> InvalidDataset:
    """Say where a CSV that pyarrow refused went wrong (the slow path, errors only)."""
    if ragged:
        first = _first_ragged(path, delimiter) or ragged[0]
        line = _line_of_record(path, first.number) if first.number else "?"
        return InvalidDataset(
            f"row {line} has {first.actual_columns} fields but the header has "
            f"{first.expected_columns}; every row needs one value per column"
        )
    if "Empty CSV file" in str(error):  # a header line without a line break after it
        return InvalidDataset(f"the {kind} file has a header row but no data rows")
    hit = re.search(r"column #(\d+)", str(error))
    suspects = [names[int(hit.group(1))]] if hit and int(hit.group(1)) < len(names) else features
    for name in suspects:
        if name not in features:
            continue
        column = pa_csv.read_csv(
            path,
            parse_options=pa_csv.ParseOptions(delimiter=delimiter),
            convert_options=pa_csv.ConvertOptions(
                include_columns=[name], column_types={name: pa.string()}, null_values=[]
            ),
        ).column(0)
        text = pc.utf8_trim_whitespace(column)
        bad = pc.and_(
            pc.invert(pc.match_substring_regex(text, NUMBER, ignore_case=True)),
            pc.greater(pc.utf8_length(text), 0),
        )
        i = pc.index(bad, True).as_py()
        if i >= 0:
            return InvalidDataset(
                f"row {_line_of_record(path, i + 2)}, column {name!r}: {column[i].as_py()!r} "
                "is not a number; feature columns must be numeric"
            )
    if "UTF8" in str(error) or "UTF-8" in str(error):
        return InvalidDataset(f"the {kind} file is not valid UTF-8 text")
    return InvalidDataset(f"the file could not be read as {kind}: {error}")


def _first_ragged(path: Path, delimiter: str) -> pa_csv.InvalidRow | None:
    """The first ragged row with its record number (a single-threaded re-parse)."""
    found: list[pa_csv.InvalidRow] = []

    def on_invalid(row: pa_csv.InvalidRow) -> str:
        found.append(row)
        return "error"

    with contextlib.suppress(pa.ArrowInvalid):
        pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(use_threads=False),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
            convert_options=pa_csv.ConvertOptions(column_types={}, null_values=[]),
        )
    return found[0] if found else None


def _line_of_record(path: Path, record: int) -> int:
    """The line of the file holding the ``record``-th non-empty line (1-based).

    pyarrow skips empty lines and counts records without them; a user counts
    lines. (Quoted values spanning lines are not supported by the reader.)
    """
    seen = 0
    with open(path, "rb") as f:
        for line_no, line in enumerate(f, start=1):
            if line.rstrip(b"\r\n"):
                seen += 1
                if seen == record:
                    return line_no
    return record


# -- Parquet ----------------------------------------------------------------------------


def read_parquet(path: Path, *, label: str | None, max_cells: int | None) -> Table:
    """Read a Parquet file; pandas' stored index columns are not features."""
    try:
        return _read_parquet(path, label, max_cells)
    except (pa.ArrowException, OSError) as e:
        raise InvalidDataset(f"the Parquet file could not be read: {e}") from None


def _read_parquet(path: Path, label: str | None, max_cells: int | None) -> Table:
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
    label_name, features = _split_columns(names, label, "Parquet", "")
    for name in features:
        t = schema.field(name).type
        if not (
            pa.types.is_integer(t)
            or pa.types.is_floating(t)
            or pa.types.is_boolean(t)
            or pa.types.is_decimal(t)
        ):
            raise InvalidDataset(f"column {name!r} has type {t}; feature columns must be numeric")
    n = pf.metadata.num_rows
    if n == 0:
        raise InvalidDataset("the Parquet file has no rows")
    _check_cells(n, len(features), max_cells)
    try:
        table = pf.read(columns=[*features, label_name])
    except (pa.ArrowException, OSError) as e:
        raise InvalidDataset(f"the Parquet file could not be read: {e}") from None

    def where(i: int) -> str:
        return f"row {i + 1}"

    x = _feature_matrix(table, features, where)
    y = _label_values(table.column(label_name), label_name, where)
    return Table(x, y, features, label_name, where)


# -- shared -----------------------------------------------------------------------------


def _check_cells(n_rows: int, n_features: int, max_cells: int | None) -> None:
    cells = n_rows * n_features
    if max_cells is not None and cells > max_cells:
        raise InvalidDataset(
            f"dataset too large: {cells} cells ({n_rows} rows × {n_features} features), "
            f"limit {max_cells} (FITQ_MAX_DATASET_CELLS)"
        )


def _feature_matrix(table: pa.Table, features: list[str], where: Where) -> np.ndarray:
    """The feature columns as float32 ``[n, f]``; refuses empty and non-finite cells."""
    x = np.empty((table.num_rows, len(features)), dtype=np.float32)
    problems: list[tuple[int, str, str]] = []
    for j, name in enumerate(features):
        column = table.column(name)
        if column.null_count:
            i = pc.index(pc.is_null(column), True).as_py()
            problems.append((i, name, "empty cell; every feature needs a value"))
            continue
        values = column.to_numpy()
        if values.dtype.kind not in "biuf":  # decimals come back as objects
            values = np.asarray(values, dtype=np.float64)
        with np.errstate(over="ignore"):  # overflow becomes ±inf, refused just below
            x[:, j] = values
        bad = np.flatnonzero(~np.isfinite(x[:, j]))
        if bad.size:
            i = int(bad[0])
            what = "NaN" if np.isnan(values[i]) else "infinite (or beyond float32's ±3.4e38)"
            problems.append((i, name, f"value is {what}; features must be finite numbers"))
    if problems:
        i, name, what = min(problems, key=lambda p: p[0])
        raise InvalidDataset(f"{where(i)}, column {name!r}: {what}")
    return x


def _label_values(column: pa.ChunkedArray, name: str, where: Where) -> np.ndarray:
    """The label column as 1-D numpy: int64, float64, bool, or an object array of str."""
    t = column.type
    if pa.types.is_dictionary(t):
        column = column.cast(t.value_type)
        t = column.type
    if column.null_count:
        i = pc.index(pc.is_null(column), True).as_py()
        raise InvalidDataset(
            f"{where(i)}, label column {name!r}: empty cell; every row needs a label"
        )
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return np.asarray(column.to_numpy())
    if pa.types.is_decimal(t):
        return np.asarray(column.to_numpy(), dtype=np.float64)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        raise InvalidDataset(f"label column {name!r} is not valid UTF-8 text")
    try:
        text = (
            column
            if pa.types.is_string(t) or pa.types.is_large_string(t)
            else column.cast(pa.string())
        )
    except pa.ArrowException:
        raise InvalidDataset(f"label column {name!r} has unsupported type {t}") from None
    return np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)
