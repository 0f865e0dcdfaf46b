"""Ingest: uploaded files → canonical arrays, and every bad file refused by name."""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fitq.service.datasets.formats import detect_format
from fitq.service.datasets.ingest import (
    ingest_file,
    is_saved,
    load_canonical,
    load_meta,
    save_canonical,
    sha256_file,
)
from fitq.service.datasets.limits import Limits
from fitq.service.datasets.shape import DataShape
from fitq.service.errors import InvalidDataset
from fitq.service.store import ArtifactStore, keys

Write = Callable[[str, "str | bytes"], Path]

IRIS_LIKE = (
    "sepal,petal,species\n5.1,1.4,setosa\n7.0,4.7,versicolor\n6.3,6.0,virginica\n4.9,1.4,setosa\n"
)


class TestCsv:
    def test_string_labels_are_sorted_classes(self, write: Write) -> None:
        ds = ingest_file(write("iris.csv", IRIS_LIKE), filename="iris.csv")
        assert ds.format == "csv"
        assert ds.feature_names == ["sepal", "petal"]
        assert ds.label == "species"
        assert ds.classes == ["setosa", "versicolor", "virginica"]
        assert ds.class_counts == [2, 1, 1]
        assert ds.y.dtype == np.int64 and ds.y.tolist() == [0, 1, 2, 0]
        assert ds.x.dtype == np.float32 and ds.x.flags.c_contiguous
        np.testing.assert_allclose(ds.x[1], [7.0, 4.7], rtol=1e-6)
        assert ds.shape == DataShape(4, 2, "classification", 3, 1)

    def test_label_names_any_column(self, write: Write) -> None:
        ds = ingest_file(write("d.csv", "a,y,b\n1,0,2\n3,1,4\n"), label="y")
        assert ds.feature_names == ["a", "b"]
        np.testing.assert_array_equal(ds.x, [[1, 2], [3, 4]])
        assert ds.y.tolist() == [0, 1]

    def test_crlf_bom_quotes_blank_lines_and_spaces(self, write: Write) -> None:
        text = '\ufeff"a","b","y"\r\n 1 ,"2",0\r\n\r\n3,4.5e0,1\r\n'
        ds = ingest_file(write("d.csv", text))
        assert ds.feature_names == ["a", "b"]
        np.testing.assert_array_equal(ds.x, [[1, 2], [3, 4.5]])

    def test_integer_and_boolean_features(self, write: Write) -> None:
        ds = ingest_file(write("d.csv", "a,b,y\n1,-2,0.5\n3,4,1.5\n"))
        assert ds.x.dtype == np.float32
        assert ds.shape.kind == "regression"

    def test_many_blocks_are_one_matrix(self, write: Write) -> None:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(20_000, 5)).astype(np.float32)
        y = rng.integers(0, 3, size=20_000)
        lines = ["f0,f1,f2,f3,f4,label"]
        lines += [",".join(f"{v:.9g}" for v in row) + f",{t}" for row, t in zip(x, y, strict=True)]
        ds = ingest_file(write("big.csv", "\n".join(lines) + "\n"))
        np.testing.assert_array_equal(ds.x, x)
        np.testing.assert_array_equal(ds.y, y)
        assert ds.shape.n_classes == 3

    def test_unknown_extension_decided_by_bytes(self, write: Write) -> None:
        assert ingest_file(write("data.txt", "a,y\n1,0\n")).format == "csv"
        assert ingest_file(write("noext", "a,y\n1,0\n"), filename=None).format == "csv"

    def test_path_like_filename_is_only_a_hint(self, write: Write, tmp_path: Path) -> None:
        ds = ingest_file(write("d.csv", "a,y\n1,0\n"), filename="../../etc/passwd.csv")
        assert ds.format == "csv"
        assert not (tmp_path.parent.parent / "etc").exists()


class TestTsv:
    def test_by_header(self, write: Write) -> None:
        ds = ingest_file(write("d.txt", "a\tb\ty\n1\t2\tcat\n3\t4\tdog\n"))
        assert ds.format == "tsv"
        assert ds.classes == ["cat", "dog"]

    def test_by_name(self, write: Write) -> None:
        ds = ingest_file(write("d.tsv", "a\tb,c\n1\t2\n"), filename="d.tsv")
        assert ds.format == "tsv"
        assert ds.feature_names == ["a"] and ds.label == "b,c"


class TestParquet:
    def test_columns_and_types(self, parquet_file: Callable[..., Path]) -> None:
        path = parquet_file(
            {
                "i": np.array([1, 2, 3], dtype=np.int32),
                "f": np.array([0.5, 1.5, 2.5]),
                "b": np.array([True, False, True]),
                "label": ["b", "a", "b"],
            }
        )
        ds = ingest_file(path, filename="train.parquet")
        assert ds.format == "parquet"
        assert ds.feature_names == ["i", "f", "b"]
        np.testing.assert_array_equal(ds.x, [[1, 0.5, 1], [2, 1.5, 0], [3, 2.5, 1]])
        assert ds.classes == ["a", "b"] and ds.y.tolist() == [1, 0, 1]

    def test_null_feature_names_row(self, parquet_file: Callable[..., Path]) -> None:
        path = parquet_file({"a": [1.0, None, 3.0], "y": [0, 1, 0]})
        with pytest.raises(InvalidDataset, match=r"row 2, column 'a': empty cell"):
            ingest_file(path)

    def test_text_feature_refused(self, parquet_file: Callable[..., Path]) -> None:
        path = parquet_file({"a": ["x", "y"], "y": [0, 1]})
        with pytest.raises(InvalidDataset, match=r"column 'a' has type string.*numeric"):
            ingest_file(path)

    def test_regression_target(self, parquet_file: Callable[..., Path]) -> None:
        ds = ingest_file(parquet_file({"a": [1.0, 2.0], "price": [10.5, 20.25]}))
        assert ds.shape.kind == "regression" and ds.y.dtype == np.float32
        assert ds.y.tolist() == [10.5, 20.25]


class TestNpz:
    def test_classification(self, npz_file: Callable[..., Path]) -> None:
        x = np.arange(12, dtype=np.float64).reshape(4, 3)
        ds = ingest_file(npz_file(x=x, y=np.array([0, 2, 2, 1], dtype=np.uint8)))
        assert ds.format == "npz" and ds.label is None
        assert ds.feature_names == ["x0", "x1", "x2"]
        assert ds.x.dtype == np.float32 and ds.x.flags.c_contiguous
        np.testing.assert_array_equal(ds.x, x)
        assert ds.shape == DataShape(4, 3, "classification", 3, 1)
        assert ds.class_counts == [1, 1, 2]

    def test_compressed_fortran_order_and_1d_x(self, npz_file: Callable[..., Path]) -> None:
        x = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(3, 2))
        ds = ingest_file(npz_file(compressed=True, x=x, y=np.array([1.0, 2.0, 3.5])))
        np.testing.assert_array_equal(ds.x, x)
        assert ds.x.flags.c_contiguous
        ds1 = ingest_file(npz_file(name="one.npz", x=np.array([1.0, 2.0]), y=np.array([0, 1])))
        assert ds1.x.shape == (2, 1)

    def test_one_hot_is_classification(self, npz_file: Callable[..., Path]) -> None:
        y = np.eye(4, dtype=np.float32)[[0, 3, 3, 1]]
        ds = ingest_file(npz_file(x=np.zeros((4, 2)), y=y))
        assert ds.shape == DataShape(4, 2, "classification", 4, 1)
        assert ds.y.tolist() == [0, 3, 3, 1] and ds.class_counts == [1, 1, 0, 2]

    def test_2d_float_is_multi_target_regression(self, npz_file: Callable[..., Path]) -> None:
        y = np.array([[0.5, 1.0], [2.0, -1.0], [0.0, 0.0]])
        ds = ingest_file(npz_file(x=np.zeros((3, 2)), y=y))
        assert ds.shape == DataShape(3, 2, "regression", None, 2)
        assert ds.y.dtype == np.float32 and ds.y.shape == (3, 2)

    def test_column_y_is_flattened(self, npz_file: Callable[..., Path]) -> None:
        ds = ingest_file(npz_file(x=np.zeros((3, 1)), y=np.array([[0], [1], [1]])))
        assert ds.y.shape == (3,) and ds.shape.n_classes == 2

    def test_text_y(self, npz_file: Callable[..., Path]) -> None:
        ds = ingest_file(npz_file(x=np.zeros((3, 1)), y=np.array(["b", "a", "b"])))
        assert ds.classes == ["a", "b"] and ds.y.tolist() == [1, 0, 1]

    def test_extra_arrays_ignored(self, npz_file: Callable[..., Path]) -> None:
        ds = ingest_file(npz_file(x=np.zeros((2, 1)), y=np.array([0, 1]), notes=np.arange(3)))
        assert ds.shape.n_rows == 2

    def test_label_argument_refused(self, npz_file: Callable[..., Path]) -> None:
        with pytest.raises(InvalidDataset, match="array 'y'"):
            ingest_file(npz_file(x=np.zeros((2, 1)), y=np.array([0, 1])), label="y")


class TestTargetKind:
    @pytest.mark.parametrize(
        ("column", "kind", "n_classes", "classes"),
        [
            (["0", "1", "1"], "classification", 2, ["0", "1"]),
            (["0", "4", "2"], "classification", 5, ["0", "1", "2", "3", "4"]),
            (["-1", "1", "1"], "regression", None, None),
            (["0", "1", "1000"], "regression", None, None),
            (["0", "1", "999"], "classification", 1000, None),
            (["0.0", "1.0", "1.0"], "regression", None, None),
            (["0.5", "1.5", "2"], "regression", None, None),
            (["true", "false", "true"], "classification", 2, ["False", "True"]),
            (["cat", "dog", "ant"], "classification", 3, ["ant", "cat", "dog"]),
            (["10", "2", "x"], "classification", 3, ["10", "2", "x"]),
        ],
    )
    def test_rule(
        self,
        write: Write,
        column: list[str],
        kind: str,
        n_classes: int | None,
        classes: list[str] | None,
    ) -> None:
        text = "a,y\n" + "".join(f"{i},{v}\n" for i, v in enumerate(column))
        ds = ingest_file(write("d.csv", text))
        assert ds.shape.kind == kind
        assert ds.shape.n_classes == n_classes
        if classes is not None:
            assert ds.classes == classes
        assert ds.y.dtype == (np.int64 if kind == "classification" else np.float32)

    def test_force_classification_of_whole_floats(self, write: Write) -> None:
        ds = ingest_file(write("d.csv", "a,y\n1,1.0\n2,0.0\n"), task="classification")
        assert ds.shape.n_classes == 2 and ds.y.tolist() == [1, 0]

    def test_force_classification_of_negative_ints(self, write: Write) -> None:
        ds = ingest_file(write("d.csv", "a,y\n1,-1\n2,1\n3,-1\n"), task="classification")
        assert ds.classes == ["-1", "1"] and ds.y.tolist() == [0, 1, 0]

    def test_force_regression_of_ints(self, write: Write) -> None:
        ds = ingest_file(write("d.csv", "a,y\n1,3\n2,5\n"), task="regression")
        assert ds.shape.kind == "regression" and ds.y.tolist() == [3.0, 5.0]

    def test_forced_classification_refuses_fractions(self, write: Write) -> None:
        with pytest.raises(InvalidDataset, match=r"non-integer value at row 3 \(0.5\)"):
            ingest_file(write("d.csv", "a,y\n1,1.0\n2,0.5\n"), task="classification")

    def test_forced_regression_refuses_text(self, write: Write) -> None:
        with pytest.raises(InvalidDataset, match="regression target must be numeric"):
            ingest_file(write("d.csv", IRIS_LIKE), task="regression")

    def test_too_many_text_classes(self, write: Write) -> None:
        text = "a,y\n" + "".join(f"{i},c{i}\n" for i in range(1001))
        with pytest.raises(InvalidDataset, match="1001 distinct values.*at most 1000"):
            ingest_file(write("d.csv", text))


def _bomb(tmp_path: Path) -> Path:
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, x=np.zeros((4096, 256), dtype=np.float32), y=np.zeros(4096))
    return path


def _pickled(tmp_path: Path) -> Path:
    path = tmp_path / "pickled.npz"
    np.savez(path, x=np.zeros((1, 2)), y=np.array([{"a": 1}], dtype=object))
    return path


def _missing_y(tmp_path: Path) -> Path:
    path = tmp_path / "noy.npz"
    np.savez(path, x=np.zeros((2, 2)), labels=np.array([0, 1]))
    return path


def _npz_nan(tmp_path: Path) -> Path:
    path = tmp_path / "nan.npz"
    x = np.zeros((3, 2))
    x[2, 1] = np.nan
    np.savez(path, x=x, y=np.array([0, 1, 0]))
    return path


def _npz_mismatch(tmp_path: Path) -> Path:
    path = tmp_path / "mismatch.npz"
    np.savez(path, x=np.zeros((3, 2)), y=np.array([0, 1]))
    return path


def _npz_named_csv(tmp_path: Path) -> Path:
    return Path(shutil.copy(_npz_mismatch(tmp_path), tmp_path / "x.csv"))


def _images(tmp_path: Path) -> Path:
    path = tmp_path / "img.npz"
    np.savez(path, x=np.zeros((2, 3, 3)), y=np.array([0, 1]))
    return path


def _pickled_x(tmp_path: Path) -> Path:
    path = tmp_path / "px.npz"
    np.savez(path, x=np.array([[object()]], dtype=object), y=np.array([0]))
    return path


def _complex_x(tmp_path: Path) -> Path:
    path = tmp_path / "cx.npz"
    np.savez(path, x=np.zeros((2, 2), dtype=complex), y=np.array([0, 1]))
    return path


def _forged_shape(tmp_path: Path) -> Path:
    """An x.npy whose header claims 10¹² cells over 16 bytes of data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 1000)}
    )
    y = io.BytesIO()
    np.save(y, np.array([0, 1]))
    path = tmp_path / "forged.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", header.getvalue() + b"\x00" * 16)
        zf.writestr("y.npy", y.getvalue())
    return path


def _parquet_huge(tmp_path: Path) -> Path:
    path = tmp_path / "huge.parquet"
    pq.write_table(pa.table({"a": [1.0, 1e39], "y": [0, 1]}), path)
    return path


def _npz_huge(tmp_path: Path) -> Path:
    path = tmp_path / "huge.npz"
    np.savez(path, x=np.array([[1.0], [-1e39]]), y=np.array([0, 1]))
    return path


def _xlsx(tmp_path: Path) -> Path:
    path = tmp_path / "book.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
    return path


def _csv_as_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "data.parquet"
    path.write_text("a,y\n1,0\n")
    return path


def _text(name: str, content: str | bytes) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return make


# (file maker, ingest arguments, what the message must say) — SPEC §7's bad files.
BAD_INPUT = {
    "nan": (_text("d.csv", "a,b,y\n1,2,0\n3,NaN,1\n"), {}, r"row 3, column 'b': value is NaN"),
    "inf": (
        _text("d.csv", "a,b,y\n1,2,0\n-inf,1,1\n"),
        {},
        r"row 3, column 'a': value is infinite",
    ),
    "float32 overflow": (_text("d.csv", "a,y\n1e39,0\n"), {}, r"row 2, column 'a'.*float32"),
    "non-numeric": (
        _text("d.csv", "a,b,y\n1,2,0\n\n3,abc,1\n"),
        {},
        r"row 4, column 'b': 'abc' is not a number",
    ),
    "empty cell": (_text("d.csv", "a,b,y\n1,2,0\n3,,1\n"), {}, r"row 3, column 'b': empty cell"),
    "empty label": (_text("d.csv", "a,y\n1,0\n3,\n"), {}, r"row 3, label column 'y': empty cell"),
    "nan label": (_text("d.csv", "a,y\n1,0.5\n3,nan\n"), {}, r"row 3, label column 'y': NaN"),
    "ragged short": (
        _text("d.csv", "a,b,y\n1,2,0\n\n3,1\n"),
        {},
        r"row 4 has 2 fields.*header has 3",
    ),
    "ragged long": (
        _text("d.tsv", "a\tb\n1\t2\n3\t4\t5\n"),
        {},
        r"row 3 has 3 fields.*header has 2",
    ),
    "empty file": (_text("d.csv", ""), {}, r"the file is empty"),
    "blank file": (_text("d.csv", "\n\n  \n"), {}, r"the file is empty"),
    "header only": (_text("d.csv", "a,b,y\n"), {}, r"header row but no data rows"),
    "header only, no newline": (_text("d.csv", "a,b,y"), {}, r"header row but no data rows"),
    "label beyond float32": (_text("d.csv", "a,y\n1,0.5\n2,1e39\n"), {}, r"row 3.*float32"),
    "parquet beyond float32": (_parquet_huge, {}, r"row 2, column 'a'.*float32"),
    "npz beyond float32": (_npz_huge, {}, r"x\[1, 0\] is too large for float32"),
    "zip, not npz": (_xlsx, {}, r"zip archive without .npy arrays"),
    "single column": (_text("d.csv", "a\n1\n2\n"), {}, r"single column 'a'.*feature"),
    "semicolons": (_text("d.csv", "a;b;y\n1;2;0\n"), {}, r"single column.*another separator"),
    "duplicate column": (_text("d.csv", "a,a,y\n1,2,0\n"), {}, r"'a' appears more than once"),
    "unknown label": (
        _text("d.csv", "a,b,y\n1,2,0\n"),
        {"label": "target"},
        r"label column 'target' is not in the file; its columns are: 'a', 'b', 'y'",
    ),
    "csv named parquet": (
        _csv_as_parquet,
        {"filename": "data.parquet"},
        r"file named 'data.parquet' is not a Parquet file: its content looks like CSV text",
    ),
    "binary named csv": (
        _text("d.csv", bytes(range(256)) * 4),
        {"filename": "data.csv"},
        r"neither UTF-8 text.*binary",
    ),
    "npz named csv": (
        _npz_named_csv,
        {"filename": "x.csv"},
        r"file named 'x.csv' is not CSV text.*NPZ",
    ),
    "latin-1 csv": (_text("d.csv", "a,y\n1,caf\xe9\n".encode("latin-1")), {}, r"save it as UTF-8"),
    "gzip": (_text("d.csv.gz", b"\x1f\x8b\x08\x00rest"), {}, r"gzip-compressed"),
    "lone npy": (_text("d.npy", b"\x93NUMPY\x01\x00rest"), {}, r"single .npy array"),
    "truncated parquet": (_text("d.parquet", b"PAR1" + b"\x00" * 32), {}, r"truncated"),
    "corrupt parquet": (
        _text("d.parquet", b"PAR1" + b"\x07" * 32 + b"PAR1"),
        {},
        r"not a readable Parquet file",
    ),
    "corrupt zip": (_text("d.npz", b"PK\x03\x04" + b"\x00" * 40), {}, r"not a readable NPZ"),
    "pickled npz": (_pickled, {}, r"NPZ holds pickled objects in 'y'; fitq never unpickles"),
    "npz missing y": (_missing_y, {}, r"missing 'y' \(found: 'labels', 'x'\)"),
    "npz nan": (_npz_nan, {}, r"x\[2, 1\] is NaN"),
    "npz length mismatch": (_npz_mismatch, {}, r"x has 3 rows but y has 2"),
    "zip bomb": (
        _bomb,
        {"limits": Limits(max_uncompressed_bytes=1 << 20)},
        r"NPZ expands to \d+ bytes.*limit of 1048576",
    ),
    "too many cells csv": (
        _text("d.csv", "a,b,y\n1,2,0\n3,4,1\n"),
        {"limits": Limits(max_cells=3)},
        r"too large: 4 cells \(2 rows × 2 features\), limit 3",
    ),
    "too many cells npz": (_bomb, {"limits": Limits(max_cells=1000)}, r"too large: 1048576 cells"),
    "forged npy shape": (_forged_shape, {}, r"array 'x' in the NPZ is truncated or corrupt"),
    "3-d x": (_images, {}, r"shape \(2, 3, 3\).*reshape"),
    "pickled x": (_pickled_x, {}, r"pickled objects in 'x'"),
    "complex x": (_complex_x, {}, r"x has dtype complex128; features must be"),
}


class TestBadInput:
    @pytest.mark.parametrize("case", list(BAD_INPUT), ids=list(BAD_INPUT))
    def test_refused_with_a_message_naming_the_problem(self, case: str, tmp_path: Path) -> None:
        make, kwargs, message = BAD_INPUT[case]
        path = make(tmp_path)
        with pytest.raises(InvalidDataset, match=message) as caught:
            ingest_file(path, **kwargs)
        assert caught.value.status_code == 422

    def test_unknown_label_points_at_the_field(self, write: Write) -> None:
        with pytest.raises(InvalidDataset) as caught:
            ingest_file(write("d.csv", "a,y\n1,0\n"), label="nope")
        assert caught.value.loc == ["body", "label"]

    def test_nothing_is_unpickled(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import pickle

        def boom(*args: object, **kwargs: object) -> None:
            raise AssertionError("unpickled")

        monkeypatch.setattr(pickle, "load", boom)
        monkeypatch.setattr(pickle, "loads", boom)
        with pytest.raises(InvalidDataset, match="pickled"):
            ingest_file(_pickled(tmp_path))


class TestFormatDetection:
    @pytest.mark.parametrize(
        ("content", "filename", "expected"),
        [
            (b"a,b\n1,2\n", "d.csv", "csv"),
            (b"a\tb\n1\t2\n", "d.csv", "tsv"),
            (b"a,b\n1,2\n", "d.tsv", "tsv"),
            (b"a,b\n1,2\n", None, "csv"),
        ],
    )
    def test_text(self, write: Write, content: bytes, filename: str | None, expected: str) -> None:
        assert detect_format(write("f", content), filename) == expected

    def test_name_with_backslashes_uses_the_last_part(self, write: Write) -> None:
        with pytest.raises(InvalidDataset, match="file named 'evil.npz'"):
            detect_format(write("f", b"a,b\n1,2\n"), "C:\\Users\\..\\evil.npz")


class TestCanonical:
    def test_roundtrip_is_memory_mapped(self, write: Write, store: ArtifactStore) -> None:
        ds = ingest_file(write("iris.csv", IRIS_LIKE))
        prefix = keys.dataset(sha256_file(write("iris.csv", IRIS_LIKE)))
        assert not is_saved(store, prefix)
        save_canonical(ds, store, prefix)
        assert is_saved(store, prefix)
        x, y = load_canonical(store, prefix)
        assert isinstance(x, np.memmap) and isinstance(y, np.memmap)
        np.testing.assert_array_equal(x, ds.x)
        np.testing.assert_array_equal(y, ds.y)
        assert x.dtype == np.float32 and y.dtype == np.int64
        meta = load_meta(store, prefix)
        assert meta["classes"] == ["setosa", "versicolor", "virginica"]
        assert meta["shape"] == {
            "n_rows": 4,
            "n_features": 2,
            "kind": "classification",
            "n_classes": 3,
            "target_dim": 1,
        }
        assert meta["format"] == "csv" and meta["label"] == "species"

    def test_regression_roundtrip(
        self, npz_file: Callable[..., Path], store: ArtifactStore
    ) -> None:
        ds = ingest_file(npz_file(x=np.ones((2, 3)), y=np.array([[1.5, 2], [3, 4]])))
        save_canonical(ds, store, "datasets/r")
        _, y = load_canonical(store, "datasets/r")
        assert y.dtype == np.float32 and y.shape == (2, 2)

    def test_same_bytes_same_sha256(self, write: Write) -> None:
        a = sha256_file(write("a.csv", IRIS_LIKE))
        b = sha256_file(write("b.csv", IRIS_LIKE))
        c = sha256_file(write("c.csv", IRIS_LIKE + "5.0,1.0,setosa\n"))
        assert a == b != c
        assert a == hashlib.sha256(IRIS_LIKE.encode()).hexdigest()

    def test_prefix_depends_on_options(self) -> None:
        sha = "0" * 64
        assert keys.dataset(sha) == f"datasets/{sha}"
        assert keys.dataset(sha, label="y") != keys.dataset(sha, label="z")
        assert keys.dataset(sha, task="regression").startswith(f"datasets/{sha}-")
        with pytest.raises(ValueError):
            keys.dataset("../etc")
