"""Metrics: Keras' names, which are their History keys, at Keras' defaults.

- ``accuracy`` (``acc``): its kind chosen from the shapes, as Keras does;
- ``binary_accuracy``, ``categorical_accuracy``, ``sparse_categorical_accuracy``;
- ``top_k_categorical_accuracy``, ``sparse_top_k_categorical_accuracy`` (k 5);
- ``precision``, ``recall`` (threshold 0.5), ``auc`` (ROC, 200 thresholds, interpolation);
- ``mae``, ``mse`` (``mean_absolute_error``, ``mean_squared_error``),
  ``root_mean_squared_error``.

Keras' metric objects resolve too (``{"class_name": "AUC", "config": {…}}``) where their
parameters are the defaults; another value is refused by name (fitq computes each metric
at Keras' defaults only). A metric that cannot fit the loss's targets is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, get_args

from fitq.service.spec.base import fail, name_key
from fitq.service.spec.losses import REGRESSION_LOSSES

MetricName = Literal[
    "accuracy", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
    "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy", "precision", "recall",
    "auc", "mae", "mse", "root_mean_squared_error",
]  # fmt: skip
METRICS: dict[str, str] = {name_key(n): n for n in get_args(MetricName)}
"""name_key(a spelling) → the canonical name (a Keras class name or function name)."""
METRICS |= {"acc": "accuracy", "meanabsoluteerror": "mae", "meansquarederror": "mse"}

_SPARSE_ONLY = ("sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy")
_DENSE = {  # what each of the others says to use with class-index targets
    "binary_accuracy": "accuracy",
    "categorical_accuracy": "sparse_categorical_accuracy (or accuracy)",
    "top_k_categorical_accuracy": "sparse_top_k_categorical_accuracy",
}

# Keras' parameters fitq takes at their default only: key → the default's spellings.
_DEFAULTS: dict[str, dict[str, tuple[Any, ...]]] = {
    "binary_accuracy": {"threshold": (0.5,)},
    "top_k_categorical_accuracy": {"k": (5,)},
    "sparse_top_k_categorical_accuracy": {"k": (5,), "from_sorted_ids": (False,)},
    "precision": {"thresholds": (None, 0.5, [0.5]), "top_k": (None,), "class_id": (None,)},
    "recall": {"thresholds": (None, 0.5, [0.5]), "top_k": (None,), "class_id": (None,)},
    "auc": {
        "num_thresholds": (200,),
        "curve": ("ROC",),
        "summation_method": ("interpolation",),
        "thresholds": (None,),
        "multi_label": (False,),
        "num_labels": (None,),
        "label_weights": (None,),
        "from_logits": (False,),
    },
}
_IGNORED = frozenset({"name", "dtype", "fn"})  # the History key is the canonical name


def _expected() -> str:
    return ", ".join(get_args(MetricName)) + " (Keras' spellings too: acc, mean_absolute_error…)"


def _keras_metric(value: Mapping[str, Any], index: int) -> str:
    """A Keras metric object → its name; its parameters must be Keras' defaults."""
    config = value.get("config")
    config = config if isinstance(config, Mapping) else {}
    fn = config.get("fn")
    name = fn if isinstance(fn, str) else value["class_name"]
    canonical = METRICS.get(name_key(name))
    if canonical is None:
        return name  # refused by name, whatever its config
    defaults = _DEFAULTS.get(canonical, {})
    for key, given in config.items():
        if key in _IGNORED:
            continue
        allowed = defaults.get(key)
        if allowed is None and (given is None or given is False):
            continue  # an option newer Keras versions add, off
        if allowed is None or not any(given == a and type(given) is type(a) for a in allowed):
            shown = json.dumps(given)
            fail(
                (index,),
                "unsupported",
                f"{value['class_name']}({key}={shown}) is not supported: fitq computes "
                f"{canonical} at Keras' defaults"
                + (f" ({key}={json.dumps(allowed[0])})" if allowed else ""),
                value,
            )
    return name


def metric_name(value: Any, loss: str | None, index: int) -> str:
    if isinstance(value, Mapping) and isinstance(value.get("class_name"), str):
        value = _keras_metric(value, index)
    if not isinstance(value, str):
        fail((index,), "name_type", f"a metric must be a name: {_expected()}", value)
    metric = METRICS.get(name_key(value))
    if metric is None:
        fail((index,), "unknown_name", f"unknown metric {value!r}; expected one of: {_expected()}")
    if metric == "accuracy" and loss in REGRESSION_LOSSES:
        fail(
            (index,),
            "metric_loss",
            f"accuracy needs a classification loss (a cross-entropy or a hinge), not {loss}; "
            "for regression use mae, mse or root_mean_squared_error",
            value,
        )
    sparse = loss == "sparse_categorical_crossentropy"
    if metric in _SPARSE_ONLY and loss is not None and not sparse:
        fail(
            (index,),
            "metric_loss",
            f"{metric} reads class-index targets, which only sparse_categorical_crossentropy "
            f"takes; with {loss} use {metric.removeprefix('sparse_')} (or accuracy)",
            value,
        )
    if sparse and metric not in (*_SPARSE_ONLY, "accuracy"):
        hint = _DENSE.get(metric, "accuracy or sparse_top_k_categorical_accuracy")
        fail(
            (index,),
            "metric_loss",
            f"{metric} compares outputs with targets of their shape, but "
            "sparse_categorical_crossentropy's targets are class indices and its outputs one "
            f"probability per class; use {hint}",
            value,
        )
    return metric
