"""The job spec: pydantic models that validate what ``POST /v1/jobs`` receives.

``JobSpec.model_dump(mode="json")`` is the normalized spec of docs/spec-contract.md —
Keras names and defaults, aliases resolved, every default filled in, a ``keras_json``
model converted — the one shape that is stored and that the engine reads as it is.
The user-facing format is docs/spec.md.

Modules, in the order a spec is read:

- ``base`` — limits, an error at a location, the strict model base, name matching
- ``names`` — one kind of name: canonical names, aliases, presets, Keras objects
- ``initializers``, ``optimizers`` (with ``schedules``), ``losses``, ``metrics``,
  ``layers`` (with ``constraints``), ``callbacks`` — the parts
- ``model`` — the stack of layers; ``job`` — compile, fit and the whole job
- ``messages`` — ``parse_spec`` and the 422 messages
- ``keras`` — Keras' ``model.to_json()`` as a fitq model (``keras_layers``: each layer;
  ``keras_values``: a config's values)
- ``against_data`` — a valid spec against the shapes of its datasets

Unknown keys are refused everywhere, with the list of the expected ones.
"""

from fitq.service.spec.against_data import check_against_data
from fitq.service.spec.base import DEFAULT_LIMITS, SpecLimits
from fitq.service.spec.job import CompileSpec, EarlyStopping, FitSpec, JobSpec
from fitq.service.spec.layers import ACTIVATIONS
from fitq.service.spec.losses import CROSS_ENTROPIES, REGRESSION_LOSSES
from fitq.service.spec.messages import format_error, parse_spec, up_to_date, validation_errors
from fitq.service.spec.model import ModelSpec

__all__ = [
    "ACTIVATIONS",
    "CROSS_ENTROPIES",
    "DEFAULT_LIMITS",
    "REGRESSION_LOSSES",
    "CompileSpec",
    "EarlyStopping",
    "FitSpec",
    "JobSpec",
    "ModelSpec",
    "SpecLimits",
    "check_against_data",
    "format_error",
    "parse_spec",
    "up_to_date",
    "validation_errors",
]
