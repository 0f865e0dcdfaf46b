"""Losses: Keras' names (and aliases such as ``mse``, ``mape``, ``kld``, ``logcosh``) and
parameters, with Keras' defaults.

The groups say what targets a loss takes, which the rest of the spec checks against the
output layer, the metrics and the dataset:

- ``sparse_categorical_crossentropy``: class indices, one output unit per class;
- ``CATEGORICAL_LOSSES``: one-hot (or probability) rows — class labels are one-hot
  encoded by the engine — with one output unit per class;
- ``BINARY_LOSSES``: labels 0/1, one output unit;
- ``REGRESSION_LOSSES`` and ``HINGE_LOSSES``: the targets' values, one output unit per
  target column (hinge and squared hinge take labels −1/1, or 0/1 turned into −1/1).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, Field, PlainValidator

from fitq.service.spec.base import AS_ITSELF, NonNegative, Positive, Strict, dispatch
from fitq.service.spec.names import Names, keras_config

CrossEntropyName = Literal[
    "sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy"
]
CROSS_ENTROPIES: tuple[str, ...] = get_args(CrossEntropyName)
CATEGORICAL_LOSSES = (
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "categorical_hinge",
)
BINARY_LOSSES = ("binary_crossentropy", "binary_focal_crossentropy")
CLASSIFICATION_LOSSES = ("sparse_categorical_crossentropy", *CATEGORICAL_LOSSES, *BINARY_LOSSES)
"""The losses that need class labels (or, for the categorical ones, one-hot rows)."""
HINGE_LOSSES = ("hinge", "squared_hinge")
RegressionName = Literal[
    "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error", "log_cosh", "kl_divergence", "poisson",
]  # fmt: skip
REGRESSION_LOSSES: tuple[str, ...] = (*get_args(RegressionName), "huber")
"""Losses of continuous targets: accuracy means nothing with them."""

LabelSmoothing = Annotated[float, Field(ge=0, le=1)]


class SparseCrossEntropyLoss(Strict):
    name: Literal["sparse_categorical_crossentropy"]
    from_logits: bool = False


class CrossEntropyLoss(Strict):
    """``label_smoothing`` ε: targets y·(1 − ε) + ε/k (categorical, k classes) or
    y·(1 − ε) + ε/2 (binary), as Keras."""

    name: Literal["categorical_crossentropy", "binary_crossentropy"]
    from_logits: bool = False
    label_smoothing: LabelSmoothing = 0.0


class BinaryFocalLoss(Strict):
    """Keras' binary focal cross-entropy: (1 − p_t)^γ · bce, times α for label 1 and
    1 − α for label 0 with ``apply_class_balancing``."""

    name: Literal["binary_focal_crossentropy"]
    apply_class_balancing: bool = False
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.25
    gamma: NonNegative = 2.0
    from_logits: bool = False
    label_smoothing: LabelSmoothing = 0.0


class CategoricalFocalLoss(Strict):
    """Keras' categorical focal cross-entropy: Σₖ α·(1 − pₖ)^γ · (−yₖ·log pₖ)."""

    name: Literal["categorical_focal_crossentropy"]
    alpha: NonNegative = 0.25
    gamma: NonNegative = 2.0
    from_logits: bool = False
    label_smoothing: LabelSmoothing = 0.0


class RegressionLoss(Strict):
    """The losses without parameters."""

    name: Literal[RegressionName, "hinge", "squared_hinge", "categorical_hinge"]


class HuberLoss(Strict):
    name: Literal["huber"]
    delta: Positive = 1.0


LOSS_CLASSES: dict[str, type[BaseModel]] = {
    "sparse_categorical_crossentropy": SparseCrossEntropyLoss,
    "categorical_crossentropy": CrossEntropyLoss,
    "binary_crossentropy": CrossEntropyLoss,
    "binary_focal_crossentropy": BinaryFocalLoss,
    "categorical_focal_crossentropy": CategoricalFocalLoss,
    **{n: RegressionLoss for n in get_args(RegressionName)},
    "hinge": RegressionLoss,
    "squared_hinge": RegressionLoss,
    "categorical_hinge": RegressionLoss,
    "huber": HuberLoss,
}
_LOSSES = Names(
    "loss",
    list(LOSS_CLASSES),
    aliases={
        "mse": "mean_squared_error",
        "mae": "mean_absolute_error",
        "mape": "mean_absolute_percentage_error",
        "msle": "mean_squared_logarithmic_error",
        "kld": "kl_divergence",
        "kullback_leibler_divergence": "kl_divergence",
        "huber_loss": "huber",
    },
)
_LOSSES.expected += ", mse, mae, mape, msle, kld, logcosh"


def _keras_loss(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    return keras_config(
        "loss",
        class_name,
        config,
        ignored=frozenset({"name", "dtype", "fn"}),
        neutral={
            "reduction": ("auto", "sum_over_batch_size", None),
            "axis": (-1,),
            "ignore_class": (None,),
        },
    )


def _loss_dict(value: Any) -> dict[str, Any]:
    return _LOSSES.object(value, _keras_loss)


_LOSS_UNION = (
    SparseCrossEntropyLoss | CrossEntropyLoss | BinaryFocalLoss | CategoricalFocalLoss
    | RegressionLoss | HuberLoss
)  # fmt: skip

Loss = Annotated[
    _LOSS_UNION,
    PlainValidator(
        dispatch(_loss_dict, LOSS_CLASSES, "name"), json_schema_input_type=str | _LOSS_UNION
    ),
    AS_ITSELF,
]
