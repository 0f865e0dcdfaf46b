"""What a job spec drawn from the OpenAPI document may still be refused for, and the
content a client would give it: shared by the live fuzzing (test_openapi_fuzz.py),
the spec's boundary cases in process (test_spec_boundaries.py) and the document's
own tests (tests/api/test_openapi_document.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fitq.service import spec as specs
from fitq.service.spec import json_schema

KERAS_EXPORT = (Path(__file__).parents[2] / "examples" / "keras" / "digits_keras3.json").read_text()
"""A real ``model.to_json()``: what a client puts in ``keras_json`` (its content is
Keras' format, which the document leaves open)."""

CROSS_FIELD = frozenset(
    {
        "input_shape",  # input_dim is input_shape's product; a flatten before other layers
        "output_units",  # the last dense layer's units for the loss
        "output_activation",  # softmax over one unit
        "metric_loss",  # a metric the loss's targets fit
        "monitor",  # a callback watches a History key the spec logs
        "length",  # normalization: mean and variance as long as each other, one per feature
        "range",  # min ≤ max (initializers, constraints)
        "pieces",  # piecewise schedule: one value more than boundaries, increasing
        "too_large",  # the model's parameters (widths × units) under FITQ_MAX_PARAMETERS
        "gd_batch_size",  # optimizer 'gd' takes no batch_size
        "reduce_lr_schedule",  # reduce_lr_on_plateau with a scheduled learning rate
        "ftrl_schedule",  # ftrl with a schedule that reaches 0
    }
)
"""The spec's rules between fields, which no schema states (docs/reliability.md, "API
fuzzing"): what a spec the document allows may still be refused for."""


def made_real(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as a client sends it: ``keras_json`` a real Keras export."""
    return {**body, "keras_json": KERAS_EXPORT} if "keras_json" in body else dict(body)


def refusals(body: Any) -> set[str]:
    """The kinds of error the spec finds in ``body`` (empty: accepted), as
    ``POST /v1/jobs`` parses it, before its datasets are looked at."""
    try:
        json_schema.validate(body, {"limits": specs.DEFAULT_LIMITS})
    except ValidationError as exc:
        return {error["type"] for error in exc.errors()}
    return set()
