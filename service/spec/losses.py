"""Losses: Keras' names (and the aliases ``mse``, ``mae``, ``huber_loss``) and parameters."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, PlainValidator

from fitq.service.spec.base import AS_ITSELF, Positive, Strict, dispatch
from fitq.service.spec.names import Names, keras_config

CrossEntropyName = Literal[
    "sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy"
]
CROSS_ENTROPIES: tuple[str, ...] = get_args(CrossEntropyName)
REGRESSION_LOSSES = ("mean_squared_error", "mean_absolute_error", "huber")


class CrossEntropyLoss(Strict):
    name: CrossEntropyName
    from_logits: bool = False


class RegressionLoss(Strict):
    name: Literal["mean_squared_error", "mean_absolute_error"]


class HuberLoss(Strict):
    name: Literal["huber"]
    delta: Positive = 1.0


LOSS_CLASSES: dict[str, type[BaseModel]] = {
    **{n: CrossEntropyLoss for n in CROSS_ENTROPIES},
    "mean_squared_error": RegressionLoss,
    "mean_absolute_error": RegressionLoss,
    "huber": HuberLoss,
}
_LOSSES = Names(
    "loss",
    list(LOSS_CLASSES),
    aliases={"mse": "mean_squared_error", "mae": "mean_absolute_error", "huber_loss": "huber"},
)
_LOSSES.expected += ", mse, mae"


def _keras_loss(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    return keras_config(
        "loss",
        class_name,
        config,
        ignored=frozenset({"name", "dtype", "fn"}),
        neutral={
            "reduction": ("auto", "sum_over_batch_size", None),
            "label_smoothing": (0.0, 0),
            "axis": (-1,),
            "ignore_class": (None,),
        },
    )


def _loss_dict(value: Any) -> dict[str, Any]:
    return _LOSSES.object(value, _keras_loss)


Loss = Annotated[
    CrossEntropyLoss | RegressionLoss | HuberLoss,
    PlainValidator(
        dispatch(_loss_dict, LOSS_CLASSES, "name"),
        json_schema_input_type=str | CrossEntropyLoss | RegressionLoss | HuberLoss,
    ),
    AS_ITSELF,
]
