"""CSV and TSV files (and what the Parquet reader shares): a header of named
columns, one of them the label.

A ``Table`` holds the feature columns as one float32 matrix and the label
column as 1-D numpy in its own type, or as dictionary codes when it is text
(``targets`` decides what it means). Every feature column must be numeric
(integers, floats or booleans); an empty cell, text, NaN or ±Inf is refused,
naming the row and the column. Rows are numbered as the user sees them: for
CSV/TSV the line of the file (the header is row 1), for Parquet the data row
counted from 1.

Counted before it is allocated: the header is read within a byte limit and its
fields counted before they become strings, the records are counted in one pass
over the bytes (``records``), and the limits are checked against rows ×
features (``limits.Limits``) before anything is parsed. Then the label column
is read alone (pyarrow's type inference over the whole column, as it always
was; text becomes dictionary codes), and the features are parsed by pyarrow's
streaming reader typed float32 up front, a block at a time, into one matrix of
exactly the counted size. Only when that fails is the file read again, a
column at a time as text, to say where.
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

from fitq.service.datasets.limits import Limits
from fitq.service.datasets.records import count_records, read_header
from fitq.service.datasets.targets import MAX_CLASSES, Coded, Where
from fitq.service.errors import InvalidDataset

NUMBER = r"^\s*[+-]?((\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|nan|inf|infinity)\s*$"
"""What pyarrow parses as a float (used only to find the cell that it did not)."""
BLOCK_BYTES = 4 << 20
"""Text pyarrow parses at a time while streaming (bytes); also its longest row."""
LABEL_BYTES = 8
"""A numeric label in canonical form (int64), counted before the label is read."""


@dataclass
class Table:
    x: np.ndarray
    y: np.ndarray | Coded
    feature_names: list[str]
    label: str
    where: Where


# -- CSV / TSV --------------------------------------------------------------------------


def read_text(path: Path, *, delimiter: str, label: str | None, limits: Limits) -> Table:
    """Read a CSV (``delimiter=","``) or TSV (``"\\t"``) file with a header row."""
    kind = "TSV" if delimiter == "\t" else "CSV"
    try:
        return _read_text(path, delimiter, label, limits, kind)
    except (pa.ArrowException, csv.Error) as e:
        raise InvalidDataset(f"the file could not be read as {kind}: {e}") from None


def _read_text(path: Path, delimiter: str, label: str | None, limits: Limits, kind: str) -> Table:
    names = read_header(path, delimiter, limits)
    label_name, features = split_columns(names, label, kind, delimiter)
    limits.check_features(len(features))
    rows = count_records(path) - 1
    if rows < 1:
        raise InvalidDataset(f"the {kind} file has a header row but no data rows")
    limits.check_size(rows, len(features), target_bytes=rows * LABEL_BYTES)

    def where(i: int) -> str:
        return f"row {_line_of_record(path, i + 2)}"

    def parse(columns: list[str], types: dict[str, pa.DataType]) -> pa_csv.CSVStreamingReader:
        return pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
            convert_options=_convert_options(columns, types),
        )

    ragged: list[pa_csv.InvalidRow] = []

    def on_invalid(row: pa_csv.InvalidRow) -> str:
        ragged.append(row)
        return "error"

    try:
        # The label alone, its type inferred over the whole column (a streaming
        # reader would fix it from the first block).
        column = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
            convert_options=_convert_options([label_name], {}),
        ).column(0)
        if len(column) != rows:  # pyarrow disagrees with the count: say where it broke
            raise pa.ArrowInvalid(f"expected {rows} rows, read {len(column)}")
        if not is_numeric(column.type):
            limits.check_size(rows, len(features), target_bytes=column.nbytes)
        x = np.empty((rows, len(features)), dtype=np.float32)
        done = 0
        for batch in parse(features, {name: pa.float32() for name in features}):
            if done + batch.num_rows > rows:
                raise pa.ArrowInvalid(f"more than the {rows} rows counted")
            fill(x, done, batch, features, where)
            done += batch.num_rows
    except pa.ArrowInvalid as e:
        raise _diagnose(path, delimiter, names, features, ragged, e, kind) from None
    y = label_values(column, label_name, where)
    return Table(x, y, features, label_name, where)


def _convert_options(
    columns: list[str], column_types: dict[str, pa.DataType]
) -> pa_csv.ConvertOptions:
    return pa_csv.ConvertOptions(
        include_columns=columns,
        column_types=column_types,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )


def split_columns(
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
    """Say where a CSV that pyarrow refused went wrong (the slow path, errors only;
    each re-read streams, so it holds a block at a time)."""
    if ragged:
        first = _first_ragged(path, delimiter, names[0]) or ragged[0]
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
        found = _first_non_number(path, delimiter, name)
        if found is not None:
            i, text = found
            return InvalidDataset(
                f"row {_line_of_record(path, i + 2)}, column {name!r}: {text!r} "
                "is not a number; feature columns must be numeric"
            )
    if "UTF8" in str(error) or "UTF-8" in str(error):
        return InvalidDataset(f"the {kind} file is not valid UTF-8 text")
    return InvalidDataset(f"the file could not be read as {kind}: {error}")


def _first_non_number(path: Path, delimiter: str, name: str) -> tuple[int, str] | None:
    """(row, text) of the first cell of column ``name`` that is not a number."""
    reader = pa_csv.open_csv(
        path,
        read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter),
        convert_options=pa_csv.ConvertOptions(
            include_columns=[name], column_types={name: pa.string()}, null_values=[]
        ),
    )
    offset = 0
    for batch in reader:
        column = batch.column(0)
        text = pc.utf8_trim_whitespace(column)
        bad = pc.and_(
            pc.invert(pc.match_substring_regex(text, NUMBER, ignore_case=True)),
            pc.greater(pc.utf8_length(text), 0),
        )
        i = pc.index(bad, True).as_py()
        if i >= 0:
            return offset + i, column[i].as_py()
        offset += batch.num_rows
    return None


def _first_ragged(path: Path, delimiter: str, first: str) -> pa_csv.InvalidRow | None:
    """The first ragged row with its record number (a single-threaded re-parse)."""
    found: list[pa_csv.InvalidRow] = []

    def on_invalid(row: pa_csv.InvalidRow) -> str:
        found.append(row)
        return "error"

    with contextlib.suppress(pa.ArrowInvalid):
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
            convert_options=pa_csv.ConvertOptions(
                include_columns=[first], column_types={first: pa.string()}, null_values=[]
            ),
        )
        for _ in reader:
            pass
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


# -- shared with the Parquet reader ----------------------------------------------------


def is_numeric(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_decimal(t)
    )


def fill(x: np.ndarray, row: int, batch: pa.RecordBatch, features: list[str], where: Where) -> None:
    """The batch's feature columns into ``x[row : row + len(batch)]`` as float32;
    refuses empty and non-finite cells, naming the first by row."""
    n = batch.num_rows
    problems: list[tuple[int, str, str]] = []
    for j, name in enumerate(features):
        column = batch.column(name)
        if column.null_count:
            i = pc.index(pc.is_null(column), True).as_py()
            problems.append((row + i, name, "empty cell; every feature needs a value"))
            continue
        if pa.types.is_decimal(column.type):
            column = pc.cast(column, pa.float64())  # in Arrow: no Decimal objects
        values = column.to_numpy(zero_copy_only=False)
        target = x[row : row + n, j]
        with np.errstate(over="ignore"):  # overflow becomes ±inf, refused just below
            target[...] = values
        bad = np.flatnonzero(~np.isfinite(target))
        if bad.size:
            i = int(bad[0])
            what = "NaN" if np.isnan(values[i]) else "infinite (or beyond float32's ±3.4e38)"
            problems.append((row + i, name, f"value is {what}; features must be finite numbers"))
    if problems:
        i, name, what = min(problems, key=lambda p: p[0])
        raise InvalidDataset(f"{where(i)}, column {name!r}: {what}")


def label_values(column: pa.ChunkedArray, name: str, where: Where) -> np.ndarray | Coded:
    """The label column as 1-D numpy (int64, float64, bool), or text as dictionary codes."""
    t = column.type
    if pa.types.is_dictionary(t) and not _is_text(t.value_type):
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
        return np.asarray(pc.cast(column, pa.float64()).to_numpy())
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        raise InvalidDataset(f"label column {name!r} is not valid UTF-8 text")
    if not (pa.types.is_dictionary(t) or _is_text(t)):
        try:
            column = column.cast(pa.string())
        except pa.ArrowException:
            raise InvalidDataset(f"label column {name!r} has unsupported type {t}") from None
    return _coded(column)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _coded(column: pa.ChunkedArray) -> Coded:
    """Text as codes into its distinct values, without a Python string per row."""
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    column = column.unify_dictionaries()
    dictionary = column.chunk(0).dictionary
    codes = np.concatenate([chunk.indices.to_numpy() for chunk in column.chunks])
    distinct = len(dictionary)
    values = dictionary.to_pylist() if distinct <= MAX_CLASSES else None
    return Coded(codes=codes, values=values, distinct=distinct, first=dictionary[codes[0]].as_py())
