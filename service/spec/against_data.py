"""A validated spec against its datasets, at submission, before anything is queued.

``check_against_data`` raises ``InvalidSpec`` with a ``loc`` under ``"body"``
naming the field to change — what Keras would only report at runtime (or not
at all: labels ≥ units train silently on garbage) is refused before the job
is queued.

Rules, with whose convention they follow:

- features: every dataset has ``model.input_dim`` features.
- classification losses (``losses.CLASSIFICATION_LOSSES``: the cross-entropies, focal
  ones and ``categorical_hinge``) need class labels (a regression dataset is refused),
  except a categorical one on a regression-kind dataset whose ``target_dim`` equals the
  output units: one-hot / probability targets.
- ``sparse_categorical_crossentropy`` and the categorical ones: the output units equal
  the training set's class count; validation and test labels lie in ``0 .. units-1``.
- the binary ones: labels 0/1, at most 2 classes.
- regression losses: the output units equal ``target_dim`` (1 for class labels
  used as numbers — allowed, as Keras allows it).
- ``validation_split``: Keras' split, ``floor(n_rows · (1 − split))`` training
  rows, leaves at least one row on each side.
- a ``batch_size`` over the row count is fine (Keras clips it to the data).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fitq.service.datasets.shape import DataShape
from fitq.service.errors import InvalidSpec
from fitq.service.spec.job import JobSpec
from fitq.service.spec.losses import BINARY_LOSSES, CATEGORICAL_LOSSES, CLASSIFICATION_LOSSES


def check_against_data(
    spec: JobSpec,
    train: DataShape,
    validation: DataShape | None = None,
    test: DataShape | None = None,
) -> None:
    """Refuse a spec that cannot train on these datasets; return None when it can."""
    _check_rows(train, "dataset", ["body", "dataset_id"])
    _check_one(spec, train, "dataset", ["body", "dataset_id"], training=True)
    if validation is not None:
        loc = ["body", "validation_dataset_id"]
        _check_rows(validation, "validation dataset", loc)
        _check_one(spec, validation, "validation dataset", loc, training=False)
    if test is not None:
        loc = ["body", "test_dataset_id"]
        _check_rows(test, "test dataset", loc)
        _check_one(spec, test, "test dataset", loc, training=False)
    _check_split(spec, train)


def check_evaluation_data(spec: JobSpec, data: DataShape, loc: Sequence[str | int]) -> None:
    """Refuse a dataset a trained model cannot be evaluated on (``POST
    /v1/jobs/{id}/evaluate``): the rules of a test dataset at submission."""
    _check_rows(data, "dataset", loc)
    _check_one(spec, data, "dataset", loc, training=False)


def _check_rows(data: DataShape, what: str, loc: Sequence[str | int]) -> None:
    if data.n_rows < 1:
        raise InvalidSpec(f"the {what} has no rows", loc=loc)


def _check_one(
    spec: JobSpec, data: DataShape, what: str, dataset_loc: Sequence[str | int], *, training: bool
) -> None:
    model = spec.model
    model_key = spec.field_loc("model")
    units, index = model.output_units, model.output_index
    units_loc: list[str | int] = ["body", model_key, "layers", index, "units"]
    loss_loc: list[str | int] = ["body", spec.field_loc("compile"), "loss"]
    loss = spec.compile.loss.name
    output = f"the output layer (layers.{index}) has {units} unit{'s' if units != 1 else ''}"

    if data.n_features != model.input_dim:
        raise InvalidSpec(
            f"{what} has {data.n_features} features, {model_key}'s input_dim is {model.input_dim}",
            loc=["body", model_key, "input_dim"] if training else dataset_loc,
        )

    if data.kind == "regression":
        if loss in CATEGORICAL_LOSSES and data.target_dim == units and units >= 2:
            return  # one-hot (or probability) targets, as Keras' categorical_crossentropy takes
        if loss in CLASSIFICATION_LOSSES:
            raise InvalidSpec(
                f"{loss} needs class labels, but the {what} is a regression dataset "
                f"(continuous targets); use mean_squared_error, mean_absolute_error or huber",
                loc=loss_loc if training else dataset_loc,
            )
        if data.target_dim != units:
            raise InvalidSpec(
                f"{what} has {data.target_dim} target column{'s' if data.target_dim != 1 else ''}"
                f", {output}",
                loc=units_loc if training else dataset_loc,
            )
        return

    n_classes = data.n_classes if data.n_classes is not None else 0
    classes = f"{what} has {n_classes} class{'es' if n_classes != 1 else ''}"
    if loss in BINARY_LOSSES:
        if n_classes > 2:
            raise InvalidSpec(
                f"{classes}; {loss} takes labels 0/1 — for {n_classes} classes use "
                f"sparse_categorical_crossentropy with {n_classes} output units and softmax",
                loc=loss_loc if training else dataset_loc,
            )
    elif loss in CLASSIFICATION_LOSSES:
        if training and n_classes != units:
            raise InvalidSpec(
                f"{classes}, {output}; a {loss} model needs one output unit per class",
                loc=units_loc,
            )
        if not training and n_classes > units:
            raise InvalidSpec(
                f"{classes} (labels up to {n_classes - 1}), {output}: labels ≥ {units} are "
                "out of range",
                loc=dataset_loc,
            )
    elif units != 1:
        raise InvalidSpec(
            f"{loss} compares each output with the label's value: with the {what}'s one label "
            f"column the model needs 1 output unit, but {output}; for classification use "
            "sparse_categorical_crossentropy",
            loc=units_loc if training else dataset_loc,
        )


def _check_split(spec: JobSpec, train: DataShape) -> None:
    split = spec.fit.validation_split
    if split <= 0:
        return
    n_train = int(math.floor(train.n_rows * (1.0 - split)))  # Keras' train_validation_split
    n_val = train.n_rows - n_train
    if n_train < 1 or n_val < 1:
        raise InvalidSpec(
            f"validation_split {split} of the dataset's {train.n_rows} row"
            f"{'s' if train.n_rows != 1 else ''} leaves {n_train} training and {n_val} "
            "validation rows; each needs at least 1",
            loc=["body", "fit", "validation_split"],
        )
