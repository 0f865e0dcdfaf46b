"""trained.read: the model file every exporter starts from, and what it refuses."""

from __future__ import annotations

import json

import numpy as np
import pytest
import safetensors.numpy

from fitq.service.errors import Conflict, InvalidInput
from fitq.service.export import trained as model_files
from fitq.service.spec.layers import LAYER_CLASSES
from tests.export.models import CASES, model_file, trained

DENSE = [{"type": "dense", "units": 1}]
DENSE_TENSORS = {"layers.0.kernel": np.ones((2, 1)), "layers.0.bias": np.zeros(1)}


class TestRead:
    def test_every_layer_type_the_spec_accepts_is_exported(self) -> None:
        """The export tests' cases hold each layer type: an exporter learns every new one."""
        covered = {layer["type"] for case in CASES.values() for layer in case.layers}
        assert covered == set(LAYER_CLASSES)

    def test_a_trained_model(self) -> None:
        t = trained("everything")
        model = model_files.read(t.model_file)
        assert (model.input_dim, model.output_dim) == (4, 3)
        assert [layer.type for layer in model.layers] == [
            "dense", "dropout", "batch_normalization", "activation", "layer_normalization",
            "dense",
        ]  # fmt: skip
        assert list(model.layers[0].weights) == ["kernel"]  # no bias
        assert list(model.layers[2].weights) == ["gamma", "beta", "moving_mean", "moving_variance"]
        assert model.mean is not None and model.std is not None
        np.testing.assert_array_equal(model.std, t.tensor("normalization.std"))
        assert model.spec == t.spec

    def test_without_normalization(self) -> None:
        model = model_files.read(model_file(DENSE, DENSE_TENSORS))
        assert model.mean is None and model.std is None
        assert model.layers[0].activation() == "linear"

    def test_float64_tensors_become_float32(self) -> None:
        data = safetensors.numpy.save(
            {k: v.astype(np.float64) for k, v in DENSE_TENSORS.items()},
            {"fitq_spec": json.dumps({"model": {"input_dim": 2, "layers": DENSE}})},
        )
        assert model_files.read(data).layers[0].weights["kernel"].dtype == np.float32


class TestRefusals:
    @pytest.mark.parametrize(
        "data, message",
        [
            (b"", "too short"),
            (b"\xff" * 8 + b"{}", "bad header length"),
            (b"\x02\x00\x00\x00\x00\x00\x00\x00[]", "not a JSON object"),
            (safetensors.numpy.save(DENSE_TENSORS), "no 'fitq_spec'"),
            (safetensors.numpy.save(DENSE_TENSORS, {"fitq_spec": "{"}), "not JSON"),
            (safetensors.numpy.save(DENSE_TENSORS, {"fitq_spec": "{}"}), "no 'model'"),
        ],
    )
    def test_not_a_model_file(self, data: bytes, message: str) -> None:
        with pytest.raises(InvalidInput, match=message):
            model_files.read(data)

    def test_a_missing_tensor(self) -> None:
        with pytest.raises(InvalidInput, match="no tensor layers.0.bias"):
            model_files.read(model_file(DENSE, {"layers.0.kernel": np.ones((2, 1))}))

    def test_a_misshapen_tensor(self) -> None:
        tensors = {**DENSE_TENSORS, "layers.0.kernel": np.ones((1, 2))}
        with pytest.raises(InvalidInput, match=r"layers.0.kernel has shape \[1, 2\]"):
            model_files.read(model_file(DENSE, tensors))

    def test_a_tensor_of_no_layer(self) -> None:
        tensors = {**DENSE_TENSORS, "layers.1.kernel": np.ones((1, 1))}
        with pytest.raises(InvalidInput, match="belong to no layer: layers.1.kernel"):
            model_files.read(model_file(DENSE, tensors))

    def test_half_a_normalization(self) -> None:
        tensors = {**DENSE_TENSORS, "normalization.mean": np.zeros(2)}
        with pytest.raises(InvalidInput, match="no tensor normalization.std"):
            model_files.read(model_file(DENSE, tensors))

    def test_a_zero_std(self) -> None:
        tensors = {**DENSE_TENSORS, "normalization.mean": np.zeros(2), "normalization.std": [1, 0]}
        with pytest.raises(InvalidInput, match="every std > 0"):
            model_files.read(model_file(DENSE, tensors))

    def test_a_layer_type_no_exporter_knows(self) -> None:
        with pytest.raises(Conflict, match="layer 0: a 'conv2d' layer cannot be exported"):
            model_files.read(model_file([{"type": "conv2d"}], {}))

    def test_an_input_shape_of_another_size(self) -> None:
        data = safetensors.numpy.save(
            {k: v.astype(np.float32) for k, v in DENSE_TENSORS.items()},
            {"fitq_spec": json.dumps({"model": {"input_dim": 2, "input_shape": [3, 1],
                                                "layers": DENSE}})},
        )  # fmt: skip
        with pytest.raises(InvalidInput, match="does not hold input_dim values"):
            model_files.read(data)
