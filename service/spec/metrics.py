"""Metrics: accuracy (its kind chosen from the loss, as Keras does), mae and mse.

Keras' spellings resolve (``acc``, ``mean_absolute_error``, ``SparseCategoricalAccuracy``
where it is what ``accuracy`` picks anyway); a metric that cannot fit the loss is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from fitq.service.spec.base import fail, name_key
from fitq.service.spec.losses import REGRESSION_LOSSES

MetricName = Literal["accuracy", "mae", "mse"]
METRICS = {"accuracy": "accuracy", "acc": "accuracy", "mae": "mae", "mse": "mse"}
METRICS |= {"meanabsoluteerror": "mae", "meansquarederror": "mse"}
# Keras' explicit accuracies are accepted where they are what "accuracy" picks anyway.
_SPECIFIC_ACCURACIES = {
    "sparsecategoricalaccuracy": "sparse_categorical_crossentropy",
    "categoricalaccuracy": "categorical_crossentropy",
    "binaryaccuracy": "binary_crossentropy",
}


def metric_name(value: Any, loss: str | None, index: int) -> str:
    if isinstance(value, Mapping) and isinstance(value.get("class_name"), str):
        config = value.get("config")
        config = config if isinstance(config, Mapping) else {}
        if config.get("threshold", 0.5) != 0.5:
            fail((index,), "unsupported", "fitq's binary accuracy uses threshold 0.5", value)
        fn = config.get("fn")
        value = fn if isinstance(fn, str) else value["class_name"]
    if not isinstance(value, str):
        fail((index,), "name_type", "a metric must be a name: accuracy, mae or mse", value)
    key = name_key(value)
    if key in _SPECIFIC_ACCURACIES:
        if loss is not None and _SPECIFIC_ACCURACIES[key] != loss:
            fail(
                (index,),
                "metric_loss",
                f"{value} does not fit the loss {loss}; use 'accuracy', which picks the "
                "right kind from the loss",
                value,
            )
        return "accuracy"
    if key not in METRICS:
        fail(
            (index,),
            "unknown_name",
            f"unknown metric {value!r}; expected one of: accuracy (acc), mae "
            "(mean_absolute_error), mse (mean_squared_error)",
            value,
        )
    metric = METRICS[key]
    if metric == "accuracy" and loss in REGRESSION_LOSSES:
        fail(
            (index,),
            "metric_loss",
            f"accuracy needs a classification loss (a cross-entropy), not {loss}; "
            "for regression use mae or mse",
            value,
        )
    if metric in ("mae", "mse") and loss == "sparse_categorical_crossentropy":
        fail(
            (index,),
            "metric_loss",
            f"{metric} compares outputs with targets, but sparse_categorical_crossentropy's "
            "targets are class indices and its outputs one probability per class",
            value,
        )
    return metric
