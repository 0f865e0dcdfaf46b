"""Built-in datasets from scikit-learn's bundled data."""

from __future__ import annotations

import numpy as np
import pytest

from fitq.service.datasets.builtin import BUILTINS, builtin_info, load_builtin
from fitq.service.datasets.ingest import load_canonical, save_canonical
from fitq.service.errors import NotFound
from fitq.service.store import ArtifactStore

EXPECTED = {
    # name: (n_rows, n_features, kind, n_classes)
    "digits": (1797, 64, "classification", 10),
    "iris": (150, 4, "classification", 3),
    "wine": (178, 13, "classification", 3),
    "breast_cancer": (569, 30, "classification", 2),
    "diabetes": (442, 10, "regression", None),
}


class TestBuiltins:
    def test_the_five_of_the_spec(self) -> None:
        assert set(BUILTINS) == set(EXPECTED)

    @pytest.mark.parametrize("name", list(EXPECTED))
    def test_canonical_form(self, name: str) -> None:
        n, f, kind, k = EXPECTED[name]
        ds = load_builtin(name)
        assert (ds.shape.n_rows, ds.shape.n_features, ds.shape.kind, ds.shape.n_classes) == (
            n,
            f,
            kind,
            k,
        )
        assert ds.format == "builtin" and ds.label == "target"
        assert ds.x.dtype == np.float32 and ds.x.shape == (n, f) and ds.x.flags.c_contiguous
        assert np.isfinite(ds.x).all()
        assert len(ds.feature_names) == f
        if kind == "classification":
            assert ds.y.dtype == np.int64 and ds.y.min() == 0 and ds.y.max() == k - 1
            assert ds.classes is not None and len(ds.classes) == k
            assert ds.class_counts is not None and sum(ds.class_counts) == n
        else:
            assert ds.y.dtype == np.float32 and ds.classes is None

    def test_classes_from_target_names(self) -> None:
        assert load_builtin("iris").classes == ["setosa", "versicolor", "virginica"]
        assert load_builtin("breast_cancer").classes == ["malignant", "benign"]
        assert load_builtin("iris").class_counts == [50, 50, 50]

    def test_arrays_are_read_only(self) -> None:
        with pytest.raises(ValueError):
            load_builtin("iris").x[0, 0] = 1.0

    def test_info_matches_and_is_cached(self) -> None:
        info = builtin_info("wine")
        assert (info.n_rows, info.n_features, info.kind) == (178, 13, "classification")
        assert info.class_counts == [59, 71, 48]
        assert info.description
        assert builtin_info("wine") is info

    def test_unknown_is_not_found(self) -> None:
        with pytest.raises(NotFound, match="'mnist'.*digits"):
            load_builtin("mnist")

    def test_saves_like_an_upload(self, store: ArtifactStore) -> None:
        save_canonical(load_builtin("diabetes"), store, "builtin/diabetes")
        x, y = load_canonical(store, "builtin/diabetes")
        assert x.shape == (442, 10) and y.dtype == np.float32
