"""The job: ``CompileSpec``, ``FitSpec`` and ``JobSpec``, what ``POST /v1/jobs`` receives.

``JobSpec.model_dump(mode="json")`` is the normalized spec of docs/spec-contract.md,
the one shape that is stored and that the engine reads. A spec is checked here as a
whole where one part decides another (the output layer against the loss, early
stopping's monitor against the logged metrics); against its datasets in
``against_data.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from fitq.service.errors import InvalidSpec
from fitq.service.spec import callbacks, keras
from fitq.service.spec.base import Fraction, Strict, fail, is_neutral, limits_of, name_key
from fitq.service.spec.callbacks import EarlyStopping, ReduceLROnPlateau
from fitq.service.spec.losses import BINARY_LOSSES, CATEGORICAL_LOSSES, Loss
from fitq.service.spec.metrics import MetricName, metric_name
from fitq.service.spec.model import ModelSpec
from fitq.service.spec.optimizers import Optimizer, RMSprop

# ---------------------------------------------------------------- compile and fit

# Keys of Keras' compile_config that fitq accepts and drops: (neutral values) or None = any.
_KERAS_COMPILE_KEYS: dict[str, tuple[Any, ...] | None] = {
    "loss_weights": (None,),
    "weighted_metrics": (None,),
    "run_eagerly": None,
    "steps_per_execution": None,
    "jit_compile": None,
    "auto_scale_loss": None,
}


class CompileSpec(Strict):
    """Keras' ``model.compile()``: optimizer (default rmsprop, as Keras), loss, metrics.

    Also accepts Keras' ``compile_config`` keys; the ones with no fitq meaning are
    dropped when neutral (``loss_weights: null``) or harmless (``jit_compile``).
    """

    optimizer: Optimizer = Field(default_factory=lambda: RMSprop(name="rmsprop"))
    loss: Loss
    metrics: list[MetricName] = Field(default_factory=list)

    @classmethod
    def _prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        for key, allowed in _KERAS_COMPILE_KEYS.items():
            if key not in data:
                continue
            value = data.pop(key)
            if allowed is not None and not is_neutral(value, allowed):
                fail((key,), "unsupported", f"{key} is not supported by fitq (got {value!r})")
        return data

    @field_validator("metrics", mode="before")
    @classmethod
    def _metric_names(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            return value
        loss = info.data.get("loss")
        loss_name = getattr(loss, "name", None)
        names: list[str] = []
        for index, item in enumerate(value):
            name = metric_name(item, loss_name, index)
            if name not in names:
                names.append(name)
        return names


class FitSpec(Strict):
    """Keras' ``model.fit()``; ``batch_size: null`` is the whole training set in one batch."""

    epochs: int = Field(default=1, ge=1)
    batch_size: int | None = Field(default=32, ge=1)
    validation_split: Fraction = 0.0
    shuffle: bool = True
    early_stopping: EarlyStopping | None = None
    reduce_lr_on_plateau: ReduceLROnPlateau | None = None
    normalize: bool = False

    @classmethod
    def _prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        return callbacks.fold(data)  # a Keras-like ``callbacks`` list, into the keys above

    @field_validator("epochs")
    @classmethod
    def _epochs_limit(cls, value: int, info: ValidationInfo) -> int:
        limit = limits_of(info).max_epochs
        if value > limit:
            raise PydanticCustomError(
                "too_large",
                "must be ≤ {limit}, the service's limit FITQ_MAX_EPOCHS (got {value})",
                {"limit": limit, "value": value},
            )  # fmt: skip
        return value


# ---------------------------------------------------------------- the job


_ID = Annotated[str, Field(min_length=1, max_length=200)]

MAX_TAGS = 20
"""Tags per job (and per sweep, its trials' own tags included)."""
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:=/+-]{0,63}$"
"""A tag: 1 to 64 letters, digits and ``_ . : = / + -``, starting with a letter or a
digit (so ``team/vision``, ``lr=0.01``, ``v2.1``; never an option such as ``-x``).
Compared exactly, case included."""
Tag = Annotated[str, Field(pattern=TAG_PATTERN)]


def unique_tags(tags: list[str]) -> list[str]:
    """``tags`` without repeats, in the order first given."""
    return list(dict.fromkeys(tags))


def _add_alternatives(schema: dict[str, Any]) -> None:
    schema.setdefault("properties", {}).update(
        {
            "keras_json": {
                "title": "Keras Json",
                "description": "Keras' model.to_json() (a string, or its parsed object) "
                "instead of 'model'",
                "anyOf": [{"type": "string"}, {"type": "object"}],
            },
            "compile_config": {
                "title": "Compile Config",
                "description": "Keras' model.get_compile_config() instead of 'compile'",
                "type": "object",
            },
        }
    )


class JobSpec(Strict):
    """What ``POST /v1/jobs`` receives. ``model_dump(mode="json")`` is the contract.

    ``model`` or ``keras_json`` (converted to ``model``, then dropped: the dump
    holds the fitq model only). ``compile``, or Keras' ``compile_config``, or
    — when neither is given — the ``compile_config`` inside ``keras_json``.
    """

    model_config = ConfigDict(json_schema_extra=_add_alternatives)

    # Never None once validated: ``_whole`` refuses a spec without them (the None default
    # keeps them optional in the JSON schema, where keras_json/compile_config stand in).
    model: ModelSpec = Field(default=None, validation_alias=AliasChoices("model", "keras_json"))  # type: ignore[assignment]
    compile: CompileSpec = Field(
        default=None, validation_alias=AliasChoices("compile", "compile_config")
    )  # type: ignore[assignment]
    fit: FitSpec = Field(default_factory=FitSpec)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    priority: int = Field(default=0, ge=-100, le=100)
    max_attempts: int = Field(default=3, ge=1, le=10)
    # The longest the job may run from its first start (None: the service's FITQ_MAX_JOB_SECONDS).
    max_seconds: int | None = Field(default=None, ge=1, le=2**31 - 1)
    # Labels to find the job by (GET /v1/jobs?tag=): the job's, not the spec's, so kept
    # out of the normalized spec (they change nothing that trains) and stored beside it.
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS, exclude=True)
    dataset_id: _ID
    validation_dataset_id: _ID | None = None
    test_dataset_id: _ID | None = None

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    def field_loc(self, field: str) -> str:
        """The key the user sent for ``field``: ``"keras_json"`` for a Keras model."""
        return self._sources.get(field, field)

    @field_validator("tags")
    @classmethod
    def _unique_tags(cls, value: list[str]) -> list[str]:
        return unique_tags(value)

    @field_validator("model", mode="before")
    @classmethod
    def _from_keras(cls, value: Any) -> Any:
        from_keras = isinstance(value, str | bytes | bytearray) or (
            isinstance(value, Mapping) and "class_name" in value
        )
        if not from_keras:
            return value
        try:
            return keras.model_from_keras(value)
        except InvalidSpec as exc:
            fail(exc.loc or (), "keras_import", exc.message)
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            # A safety net: an export shaped unlike any Keras' is the client's error, not a 500.
            fail((), "keras_import", f"keras_json is not a Keras model export we can read ({exc})")

    @model_validator(mode="wrap")
    @classmethod
    def _whole(cls, data: Any, handler: Callable[[Any], JobSpec]) -> JobSpec:
        if not isinstance(data, Mapping):
            return handler(data)
        data = _resolve_alternatives(dict(data))
        spec = handler(data)
        spec._sources = {
            "model": "keras_json" if "keras_json" in data else "model",
            "compile": "compile_config" if "compile_config" in data else "compile",
        }
        spec._check_output()
        spec._check_fit()
        return spec

    def _check_output(self) -> None:
        """The output layer against the loss — what no dataset can make right."""
        loss, model = self.compile.loss.name, self.model
        index, units = model.output_index, model.output_units
        units_loc = (self.field_loc("model"), "layers", index, "units")
        if loss in ("sparse_categorical_crossentropy", *CATEGORICAL_LOSSES) and units < 2:
            fail(
                units_loc,
                "output_units",
                f"{loss} needs one output unit per class (at least 2); the last dense layer "
                f"(layers.{index}) has 1. For two classes use 2 units with softmax, or "
                "binary_crossentropy with 1 unit and sigmoid",
                units,
            )
        if loss in BINARY_LOSSES and units != 1:
            fail(
                units_loc,
                "output_units",
                f"{loss} takes 1 output unit (the probability of label 1; labels "
                f"are 0/1, one label column); the last dense layer (layers.{index}) has {units}. "
                f"For {units} classes use sparse_categorical_crossentropy with softmax",
                units,
            )
        where, activation = model.output_activation()
        if activation == "softmax" and units == 1:
            fail(
                (self.field_loc("model"), "layers", where, "activation"),
                "output_activation",
                "softmax over 1 unit always outputs 1.0, so nothing can be learned; use "
                "sigmoid (with binary_crossentropy) or 2 units",
                activation,
            )

    def _check_fit(self) -> None:
        fit = self.fit
        has_validation = fit.validation_split > 0 or self.validation_dataset_id is not None
        if fit.validation_split > 0 and self.validation_dataset_id is not None:
            fail(
                ("fit", "validation_split"),
                "validation_twice",
                "give validation_split or validation_dataset_id, not both (Keras would "
                "silently ignore validation_split)",
                fit.validation_split,
            )
        if fit.reduce_lr_on_plateau is not None and not isinstance(
            self.compile.optimizer.learning_rate, int | float
        ):
            fail(
                ("fit", "reduce_lr_on_plateau"),
                "reduce_lr_schedule",
                "reduce_lr_on_plateau sets the learning rate, but compile.optimizer's follows "
                "a schedule (Keras refuses to set a scheduled rate too); use one or the other",
            )
        logged = ["loss", *self.compile.metrics]
        available = logged + [f"val_{k}" for k in logged] if has_validation else logged
        for key, what in (
            ("early_stopping", "early stopping"),
            ("reduce_lr_on_plateau", "reduce_lr_on_plateau"),
        ):
            callback = getattr(fit, key)
            monitor = callback.monitor if callback is not None else None
            if monitor is None or monitor in available:
                continue
            hint = (
                "it needs validation data: set fit.validation_split > 0 or validation_dataset_id"
                if monitor.startswith("val_") and monitor[4:] in logged
                else f"expected one of: {', '.join(available)}"
            )
            fail(
                ("fit", key, "monitor"),
                "monitor",
                f"{what} monitors {monitor!r}, which is not logged; {hint}",
                monitor,
            )


def _resolve_alternatives(data: dict[str, Any]) -> dict[str, Any]:
    """model/keras_json and compile/compile_config: exactly one each; the ``gd`` alias."""
    if "model" in data and "keras_json" in data:
        fail(("keras_json",), "model_twice", "give either model or keras_json, not both")
    if data.get("model", data.get("keras_json")) is None:
        fail(
            ("model",),
            "model_required",
            "a model is required: 'model' (fitq's layers) or 'keras_json' (Keras' model.to_json())",
        )
    if "compile" in data and "compile_config" in data:
        fail(
            ("compile_config",), "compile_twice", "give either compile or compile_config, not both"
        )
    if "compile" not in data and "compile_config" not in data and "keras_json" in data:
        try:
            embedded = keras.compile_config(data["keras_json"])
        except InvalidSpec:
            embedded = None  # the model field reports it
        if embedded is not None:
            data["compile_config"] = embedded
    compile_ = data.get("compile", data.get("compile_config"))
    if compile_ is None:
        fail(
            ("compile",),
            "compile_required",
            "compile is required: at least a loss, as Keras' model.compile(loss=…)",
        )
    optimizer = compile_.get("optimizer") if isinstance(compile_, Mapping) else None
    if isinstance(optimizer, Mapping):
        optimizer = optimizer.get("name", optimizer.get("class_name"))
    if isinstance(optimizer, str) and name_key(optimizer) == "gd":
        fit = data.get("fit", {})
        if isinstance(fit, Mapping):
            if fit.get("batch_size") is not None:
                fail(
                    ("fit", "batch_size"),
                    "gd_batch_size",
                    f"optimizer 'gd' is gradient descent on the whole dataset, so it takes no "
                    f"batch_size (got {fit['batch_size']}); remove it, or use 'sgd'",
                    fit["batch_size"],
                )
            data["fit"] = {**fit, "batch_size": None}
    return data
