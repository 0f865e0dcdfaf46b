"""Ingest counts before it allocates: each format's size is known (headers,
footer, a count of records) and checked against the limits before anything is
decoded, then the data is decoded a chunk at a time into one float32 matrix —
with the same values, and the same errors at the same rows, as a whole read."""

from __future__ import annotations

import decimal
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from fitq.service.datasets import npz, parquet, records, tabular
from fitq.service.datasets.ingest import ingest_file
from fitq.service.datasets.limits import Limits
from fitq.service.errors import InvalidDataset
from tests.security import bombs

Write = Callable[[str, "str | bytes"], Path]


class TestCountRecords:
    @pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 18])
    def test_agrees_with_pyarrow_on_every_line_break(
        self, chunk: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """\\n, \\r\\n, a lone \\r, empty lines, no final break, across chunk boundaries."""
        monkeypatch.setattr(records, "COUNT_CHUNK_BYTES", chunk)
        rng = random.Random(chunk)
        path = tmp_path / "d.csv"
        compared = 0
        for _ in range(300):
            lines = ["a,b"] + [rng.choice(["1,2", "", "3,4", '5,"6"']) for _ in range(12)]
            text = "".join(line + rng.choice(["\n", "\r\n", "\r"]) for line in lines)
            text = ("\n\r\n" if rng.random() < 0.2 else "") + text
            path.write_bytes((text.rstrip("\r\n") if rng.random() < 0.3 else text).encode())
            strings = {"a": pa.string(), "b": pa.string()}
            options = pa_csv.ConvertOptions(column_types=strings)
            rows = pa_csv.read_csv(path, convert_options=options).num_rows
            assert records.count_records(path) == rows + 1, text
            compared += 1
        assert compared == 300


class TestHeader:
    def test_too_many_columns_are_refused_from_the_bytes(self, write: Write) -> None:
        path = write("wide.csv", ",".join(f"c{i}" for i in range(1_001)) + "\n" + "0," * 1_000)
        with pytest.raises(InvalidDataset, match=r"1000 feature columns, limit 999 \(FITQ_MAX"):
            records.read_header(path, ",", Limits(max_features=999))

    def test_a_header_without_an_end_is_refused_at_the_limit(
        self, write: Write, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(records, "MAX_HEADER_BYTES", 100)
        monkeypatch.setattr(records, "HEADER_READ_BYTES", 16)
        with pytest.raises(InvalidDataset, match="longer than 100 bytes"):
            records.read_header(write("d.csv", "a" * 500), ",", Limits())
        found = records.read_header(write("d.csv", "\r\n\nx,y\r\n1,2\n"), ",", Limits())
        assert found == ["x", "y"]


class TestLimits:
    """Each format, refused from what it declares, before its cells are read."""

    @pytest.fixture
    def files(self, write: Write, tmp_path: Path) -> dict[str, Path]:
        x = np.zeros((100, 5), dtype=np.float32)
        header = "a,b,c,d,e,y\n"
        buffer = tmp_path / "d.npz"
        np.savez(buffer, x=x, y=np.zeros(100, dtype=np.int64))
        table = pa.table({**{k: x[:, i] for i, k in enumerate("abcde")}, "y": np.zeros(100)})
        pq.write_table(table, tmp_path / "d.parquet")
        return {
            "csv": write("d.csv", header + "0,0,0,0,0,1\n" * 100),
            "tsv": write("d.tsv", header.replace(",", "\t") + "0\t0\t0\t0\t0\t1\n" * 100),
            "parquet": tmp_path / "d.parquet",
            "npz": buffer,
        }

    @pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "npz"])
    def test_features(self, files: dict[str, Path], fmt: str) -> None:
        with pytest.raises(InvalidDataset, match=r"5 feature columns, limit 4 \(FITQ_MAX_FEATURES"):
            ingest_file(files[fmt], limits=Limits(max_features=4))
        assert ingest_file(files[fmt], limits=Limits(max_features=5)).shape.n_features == 5

    @pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "npz"])
    def test_decoded_bytes(self, files: dict[str, Path], fmt: str) -> None:
        """100 rows × 5 features × 4 bytes + 8 bytes a label: 2,800 bytes."""
        with pytest.raises(InvalidDataset, match=r"decodes to 2800 bytes .* limit 2799 .*read"):
            ingest_file(files[fmt], limits=Limits(max_bytes=2_799))
        assert ingest_file(files[fmt], limits=Limits(max_bytes=2_800)).shape.n_rows == 100

    def test_a_parquet_text_label_counts_its_stored_size(self, tmp_path: Path) -> None:
        path = bombs.parquet_label(tmp_path / "l.parquet", 200, 1_000)  # 200 KB of label
        with pytest.raises(InvalidDataset, match="FITQ_MAX_DATASET_BYTES"):
            ingest_file(path, limits=Limits(max_bytes=100_000))

    def test_a_csv_text_label_counts_its_bytes(self, write: Write) -> None:
        path = write("d.csv", "a,y\n" + "".join(f"1,{'z' * 500}{i % 3}\n" for i in range(100)))
        with pytest.raises(InvalidDataset, match="FITQ_MAX_DATASET_BYTES"):
            ingest_file(path, limits=Limits(max_bytes=10_000))
        assert ingest_file(path, limits=Limits(max_bytes=100_000)).classes is not None

    def test_a_delta_encoded_parquet_label_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "d.parquet"
        table = pa.table({"a": [1.0, 2.0], "y": ["cat", "dog"]})
        pq.write_table(table, path, use_dictionary=False, column_encoding={"y": "DELTA_BYTE_ARRAY"})
        with pytest.raises(InvalidDataset, match="DELTA_BYTE_ARRAY"):
            ingest_file(path)


class TestZipDirectory:
    def test_too_many_members_are_refused_from_the_end_record(self, tmp_path: Path) -> None:
        """70,000 members: the count is in the zip64 end record, read before the directory."""
        path = bombs.zip_members(tmp_path / "m.npz", 70_000)
        with pytest.raises(InvalidDataset, match="the zip holds 70000 members, over 64"):
            npz.read_npz(path, Limits())

    def test_a_directory_over_its_limit_is_refused(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = bombs.zip_members(tmp_path / "m.npz", 10)
        monkeypatch.setattr(npz, "MAX_DIRECTORY_BYTES", 100)
        with pytest.raises(InvalidDataset, match=r"the zip's directory is 530 bytes, over 100"):
            npz.read_npz(path, Limits())


class TestChunks:
    """Small chunks, so that every read crosses many boundaries."""

    @pytest.mark.parametrize("order", ["C", "F"])
    @pytest.mark.parametrize("dtype", ["<f8", ">f8", "<f2", "<i2", "|b1", "<u4"])
    def test_npz_values_equal_a_whole_read(
        self,
        npz_file: Callable[..., Path],
        monkeypatch: pytest.MonkeyPatch,
        order: str,
        dtype: str,
    ) -> None:
        monkeypatch.setattr(npz, "READ_CHUNK_BYTES", 24)
        rng = np.random.default_rng(0)
        x = np.asarray(rng.integers(0, 50, size=(37, 5)), dtype=dtype, order=order)  # type: ignore[call-overload]
        ds = ingest_file(npz_file(compressed=True, x=x, y=np.arange(37) % 3))
        np.testing.assert_array_equal(ds.x, x.astype(np.float32))
        assert ds.x.flags.c_contiguous

    def test_npz_names_the_bad_cell_past_the_first_chunk(
        self, npz_file: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(npz, "READ_CHUNK_BYTES", 32)
        x = np.zeros((40, 3))
        x[29, 2], x[31, 0] = np.inf, 1e300
        with pytest.raises(InvalidDataset, match=r"x\[29, 2\] is NaN or infinite"):
            ingest_file(npz_file(x=x, y=np.zeros(40)))
        x[29, 2] = 0
        with pytest.raises(InvalidDataset, match=r"x\[31, 0\] is too large for float32"):
            ingest_file(npz_file(x=x, y=np.zeros(40)))

    def test_csv_blocks_give_the_same_dataset(
        self, write: Write, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        text = "a,b,y\n" + "".join(
            f"{i},{i * 0.5},{'cat' if i % 3 else 'dog'}\n" for i in range(500)
        )
        whole = ingest_file(write("d.csv", text))
        monkeypatch.setattr(tabular, "BLOCK_BYTES", 256)
        blocks = ingest_file(write("d.csv", text))
        np.testing.assert_array_equal(blocks.x, whole.x)
        np.testing.assert_array_equal(blocks.y, whole.y)
        assert blocks.classes == whole.classes == ["cat", "dog"]

    @pytest.mark.parametrize(
        ("bad_line", "cell", "message"),
        [
            ("1,x,0", "x", r"row 400, column 'b': 'x' is not a number"),
            ("1,,0", "", r"row 400, column 'b': empty cell"),
            ("1,nan,0", "nan", r"row 400, column 'b': value is NaN"),
            ("1,2", "", r"row 400 has 2 fields but the header has 3"),
        ],
    )
    def test_csv_names_the_row_past_the_first_block(
        self,
        write: Write,
        monkeypatch: pytest.MonkeyPatch,
        bad_line: str,
        cell: str,
        message: str,
    ) -> None:
        monkeypatch.setattr(tabular, "BLOCK_BYTES", 256)
        lines = ["a,b,y"] + [f"{i},{i},1" for i in range(2, 400)] + [bad_line, "5,5,0"]
        with pytest.raises(InvalidDataset, match=message):
            ingest_file(write("d.csv", "\n".join(lines) + "\n"))

    def test_parquet_batches_give_the_same_dataset(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(parquet, "BATCH_ROWS", 7)
        values = [decimal.Decimal(f"{i}.25") for i in range(50)]
        labels = ["b", "a", "c", "a", "b"] * 10
        columns: dict[str, Any] = {
            "d": pa.array(values, pa.decimal128(10, 2)),
            "i": pa.array(range(50), pa.int16()),
            "y": pa.array(labels).dictionary_encode(),
        }
        path = tmp_path / "d.parquet"
        pq.write_table(pa.table(columns), path, row_group_size=20)
        ds = ingest_file(path)
        np.testing.assert_array_equal(ds.x[:, 0], np.arange(50) + 0.25)
        np.testing.assert_array_equal(ds.x[:, 1], np.arange(50))
        assert ds.classes == ["a", "b", "c"] and ds.class_counts == [20, 20, 10]
        assert ds.y.tolist()[:5] == [1, 0, 2, 0, 1]

    def test_parquet_names_the_row_past_the_first_batch(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(parquet, "BATCH_ROWS", 7)
        path = tmp_path / "d.parquet"
        a = [float(i) for i in range(30)]
        a[22] = None  # type: ignore[call-overload]
        pq.write_table(pa.table({"a": a, "y": [0] * 30}), path)
        with pytest.raises(InvalidDataset, match=r"row 23, column 'a': empty cell"):
            ingest_file(path)


class TestTextLabels:
    def test_more_classes_than_allowed_are_refused_by_their_count(self, write: Write) -> None:
        text = "a,y\n" + "".join(f"1,k{i}\n" for i in range(1_001))
        with pytest.raises(InvalidDataset, match="has 1001 distinct values; classification"):
            ingest_file(write("d.csv", text))

    def test_text_never_regresses(self, write: Write) -> None:
        with pytest.raises(InvalidDataset, match=r"holds text \(row 2: 'cat'\)"):
            ingest_file(write("d.csv", "a,y\n1,cat\n2,dog\n"), task="regression")
