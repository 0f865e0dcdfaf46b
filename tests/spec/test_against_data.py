"""service/spec/against_data.py: a valid spec against the shapes of its datasets."""

from __future__ import annotations

from typing import Any

import pytest

from fitq.service.datasets.shape import DataShape
from fitq.service.errors import InvalidSpec
from fitq.service.spec import JobSpec, check_against_data, parse_spec
from tests.spec.conftest import dense, keras_spec, spec_dict

MNIST = DataShape(n_rows=1000, n_features=784, kind="classification", n_classes=10)


def spec(loss: str = "sparse_categorical_crossentropy", units: int = 10, **fit: Any) -> JobSpec:
    """SPEC §2's model with the output layer and loss replaced."""
    data = spec_dict(compile={"loss": loss}, fit=fit)
    activation = "softmax" if units > 1 and "categorical" in loss else "linear"
    data["model"]["layers"][-1] = {"type": "dense", "units": units, "activation": activation}
    return parse_spec(data)


def classes(n: int, n_features: int = 784, n_rows: int = 1000) -> DataShape:
    return DataShape(n_rows=n_rows, n_features=n_features, kind="classification", n_classes=n)


def regression(target_dim: int = 1, n_features: int = 784) -> DataShape:
    return DataShape(
        n_rows=100, n_features=n_features, kind="regression", n_classes=None, target_dim=target_dim
    )


def refusal(spec_: JobSpec, train: DataShape, **others: DataShape) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as info:
        check_against_data(spec_, train, **others)
    return info.value


class TestAccepted:
    def test_reference_model_on_mnist(self) -> None:
        check_against_data(spec(), MNIST, validation=classes(10), test=classes(9))

    @pytest.mark.parametrize("loss", ["mse", "mae", "huber"])
    def test_regression(self, loss: str) -> None:
        check_against_data(spec(loss, units=3), regression(target_dim=3))

    def test_regression_loss_on_class_labels_with_one_unit(self) -> None:
        check_against_data(spec("mse", units=1), MNIST)  # Keras allows it; so does fitq

    def test_binary(self) -> None:
        check_against_data(spec("binary_crossentropy", units=1), classes(2))

    def test_categorical_on_one_hot_targets(self) -> None:
        check_against_data(spec("categorical_crossentropy"), regression(target_dim=10))

    def test_batch_larger_than_the_dataset(self) -> None:
        check_against_data(spec(batch_size=10_000), classes(10, n_rows=5))


class TestRefused:
    def test_feature_count(self) -> None:
        error = refusal(spec(), classes(10, n_features=20))
        assert error.loc == ["body", "model", "input_dim"]
        assert error.message == "dataset has 20 features, model's input_dim is 784"

    def test_feature_count_of_a_keras_model_names_keras_json(self) -> None:
        keras = parse_spec(keras_spec(dense(10, "softmax"), input_dim=784))
        error = refusal(keras, classes(10, n_features=20))
        assert error.loc == ["body", "keras_json", "input_dim"]

    def test_more_classes_than_output_units(self) -> None:
        error = refusal(spec(), classes(12))
        assert error.loc == ["body", "model", "layers", 3, "units"]
        assert error.message.startswith(
            "dataset has 12 classes, the output layer (layers.3) has 10 units"
        )

    def test_fewer_classes_than_output_units(self) -> None:
        assert "dataset has 3 classes" in refusal(spec(), classes(3)).message

    def test_binary_with_three_classes(self) -> None:
        error = refusal(spec("binary_crossentropy", units=1), classes(3))
        assert error.loc == ["body", "compile", "loss"]
        assert "binary_crossentropy takes labels 0/1" in error.message

    def test_cross_entropy_on_regression_data(self) -> None:
        error = refusal(spec(), regression())
        assert error.loc == ["body", "compile", "loss"]
        assert "needs class labels" in error.message

    def test_regression_target_dim(self) -> None:
        error = refusal(spec("mse", units=2), regression(target_dim=1))
        assert error.loc == ["body", "model", "layers", 3, "units"]
        assert "1 target column" in error.message

    def test_regression_loss_on_classes_with_many_units(self) -> None:
        assert "needs 1 output unit" in refusal(spec("mse", units=10), MNIST).message

    def test_validation_labels_out_of_range(self) -> None:
        error = refusal(spec(), MNIST, validation=classes(12))
        assert error.loc == ["body", "validation_dataset_id"]
        assert "labels up to 11" in error.message and "out of range" in error.message

    def test_validation_feature_count(self) -> None:
        error = refusal(spec(), MNIST, validation=classes(10, n_features=783))
        assert error.loc == ["body", "validation_dataset_id"]
        assert "validation dataset has 783 features" in error.message

    def test_test_set_kind(self) -> None:
        error = refusal(spec(), MNIST, test=regression())
        assert error.loc == ["body", "test_dataset_id"]

    @pytest.mark.parametrize(("n_rows", "split"), [(1, 0.5), (1, 0.1), (10, 1e-17), (3, 0.99)])
    def test_validation_split_leaves_a_side_empty(self, n_rows: int, split: float) -> None:
        error = refusal(spec(validation_split=split), classes(10, n_rows=n_rows))
        assert error.loc == ["body", "fit", "validation_split"]
        assert "each needs at least 1" in error.message

    def test_validation_split_just_large_enough(self) -> None:
        check_against_data(spec(validation_split=0.5), classes(10, n_rows=2))

    def test_empty_dataset(self) -> None:
        error = refusal(spec(), classes(10, n_rows=0))
        assert error.loc == ["body", "dataset_id"] and "no rows" in error.message
