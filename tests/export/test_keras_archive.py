"""to_keras: the archive that keras.saving.load_model opens, predicting as fitq does."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import h5py
import numpy as np
import pytest

from fitq.service.errors import Conflict
from fitq.service.export.keras_archive import NORMALIZATION_FLOOR, to_keras
from tests.export.models import CASES, TOLERANCE, max_difference, model_file, trained
from tests.support.keras_reference import IGNORE_ARRAY_COPY_WARNING

pytestmark = IGNORE_ARRAY_COPY_WARNING


def load(keras: ModuleType, archive: bytes, tmp_path: Path) -> Any:
    path = tmp_path / "model.keras"
    path.write_bytes(archive)
    return keras.saving.load_model(path)


class TestPredictions:
    @pytest.mark.parametrize("name", list(CASES))
    def test_equal_fitqs_predict(self, name: str, keras: ModuleType, tmp_path: Path) -> None:
        t = trained(name)
        model = load(keras, to_keras(t.model_file), tmp_path)
        assert isinstance(model, keras.Sequential)
        x = t.x.reshape(len(t.x), *t.spec["model"]["input_shape"])  # rows as Keras takes them
        got = model.predict(x, verbose=0)
        assert max_difference(got, t.expected) <= TOLERANCE

    @pytest.mark.parametrize("name", ["normalize", "normalize_tiny_std"])
    def test_normalization_is_fitqs_to_the_bit(
        self, name: str, keras: ModuleType, tmp_path: Path
    ) -> None:
        """Keras divides by max(√variance, ε): with variance = std² it divides by std, and a
        std under the floor is scaled by a power of two first, which rounds the same."""
        t = trained(name)
        model = load(keras, to_keras(t.model_file), tmp_path)
        rescaled = name == "normalize_tiny_std"
        assert [layer.__class__.__name__ for layer in model.layers[: 1 + rescaled]] == [
            "Rescaling"
        ] * rescaled + ["Normalization"]
        h = t.x
        for layer in model.layers[: 1 + rescaled]:
            h = keras.ops.convert_to_numpy(layer(h))
        mean, std = t.tensor("normalization.mean"), t.tensor("normalization.std")
        np.testing.assert_array_equal(h, (t.x - mean) / std)


def test_the_square_root_of_a_float32_square_is_itself() -> None:
    """What the Normalization layer's variance relies on, over float32's whole range of
    stds the archive divides by as they are."""
    rng = np.random.default_rng(0)
    lo, hi = np.log2(NORMALIZATION_FLOOR), 63
    std = np.exp2(rng.uniform(lo, hi, size=1_000_000)).astype(np.float32)
    variance = (std.astype(np.float64) ** 2).astype(np.float32)  # as Keras reads the config
    np.testing.assert_array_equal(np.sqrt(variance), std)


class TestArchive:
    def test_holds_what_keras_writes(self) -> None:
        archive = zipfile.ZipFile(io.BytesIO(to_keras(trained("everything").model_file)))
        assert sorted(archive.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
        assert json.loads(archive.read("metadata.json"))["keras_version"].startswith("3.")
        config = json.loads(archive.read("config.json"))
        names = [layer["config"]["name"] for layer in config["config"]["layers"]]
        assert names == [
            "input",
            "normalization",
            "dense_0",
            "dropout_1",
            "batch_normalization_2",
            "activation_3",
            "layer_normalization_4",
            "dense_5",
        ]
        with h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as h5:
            assert h5["layers/batch_normalization/vars"].attrs["name"] == "batch_normalization_2"
            assert len(h5["layers/batch_normalization/vars"]) == 4
            assert len(h5["layers/dense_1/vars"]) == 2  # the second Dense, with its bias

    def test_is_a_function_of_the_file_and_the_date(self) -> None:
        data, when = trained("everything").model_file, datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
        archive = to_keras(data, saved_at=when)
        assert archive == to_keras(data, saved_at=when)
        metadata = json.loads(zipfile.ZipFile(io.BytesIO(archive)).read("metadata.json"))
        assert metadata["date_saved"] == "2025-01-02@03:04:05"

    def test_keras_layers_keep_their_parameters(self, keras: ModuleType, tmp_path: Path) -> None:
        model = load(keras, to_keras(trained("relu_all_layer").model_file), tmp_path)
        relu = model.get_layer("relu_1")
        assert (relu.max_value, relu.negative_slope, relu.threshold) == (2.0, 0.1, 0.5)
        model = load(keras, to_keras(trained("constraints").model_file), tmp_path)
        dense = model.get_layer("dense_0")
        assert dense.kernel_constraint.max_value == 0.5
        assert type(dense.bias_constraint).__name__ == "NonNeg"
        model = load(keras, to_keras(trained("image").model_file), tmp_path)
        assert tuple(model.input_shape) == (None, 2, 2)

    def test_layers_keep_their_settings(self, keras: ModuleType, tmp_path: Path) -> None:
        model = load(keras, to_keras(trained("regularized").model_file), tmp_path)
        reg = model.get_layer("dense_0").kernel_regularizer
        assert (reg.l1, reg.l2) == pytest.approx((0.01, 0.02))
        model = load(keras, to_keras(trained("everything").model_file), tmp_path)
        assert model.get_layer("batch_normalization_2").momentum == 0.5
        assert model.get_layer("dropout_1").rate == 0.2
        assert model.get_layer("dense_0").use_bias is False

    def test_keras_can_keep_training_it(self, keras: ModuleType, tmp_path: Path) -> None:
        t = trained("everything")
        model = load(keras, to_keras(t.model_file), tmp_path)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        history = model.fit(t.x, np.zeros(len(t.x), dtype=np.int64), epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"]).all()


class TestRefusals:
    def test_an_activation_keras_has_no_equal_for(self) -> None:
        layers = [{"type": "dense", "units": 1, "activation": "relu6"}]
        data = model_file(layers, {"layers.0.kernel": np.ones((2, 1)), "layers.0.bias": [0.0]})
        with pytest.raises(Conflict, match="layer 0: activation 'relu6'"):
            to_keras(data)

    def test_gaussian_noise_keras_3_would_refuse(self) -> None:
        layers = [
            {"type": "gaussian_noise", "stddev": 1.5},
            {"type": "dense", "units": 1, "use_bias": False},
        ]
        data = model_file(layers, {"layers.1.kernel": np.ones((2, 1))})
        with pytest.raises(Conflict, match=r"layer 0: GaussianNoise\(stddev=1.5\)"):
            to_keras(data)

    def test_stds_too_far_apart_for_one_power_of_two(self) -> None:
        layers = [{"type": "dense", "units": 1, "use_bias": False}]
        tensors = {
            "layers.0.kernel": np.ones((2, 1)),
            "normalization.mean": [0.0, 0.0],
            "normalization.std": [1e-30, 1e10],
        }
        with pytest.raises(Conflict, match="normalization's std spans 1e-30 to 1e"):
            to_keras(model_file(layers, tensors))
