"""The job spec's JSON schema, stated as the spec enforces it.

pydantic derives the schema of each part from its model (bounds as ``minimum``,
``exclusiveMaximum``…; a layer's ``type`` and an optimizer object's ``name`` as
``const``). What it cannot see is stated here, from the same tables the
validators read, so the document and the API cannot drift apart:

- a bare name (``"adam"``, ``"mse"``, ``"he_normal"``, an activation, a metric)
  is one of its table's names, aliases included (``names.REGISTRY``,
  ``metrics.METRICS``: :func:`spellings`). The spec reads each name ignoring case,
  ``_``, ``-`` and spaces (``base.name_key``), so Keras' ``"RMSprop"`` resolves
  too; the document lists the names as fitq writes them (an ``enum``, which client
  generators and fuzzers read cheaply: a pattern of every spelling made the job
  spec's fuzzing twice as slow), and says so in each description;
- a monitor is ``loss`` or a metric's name, ``val_`` before or not;
- the layers are a discriminated union on ``type`` (``oneOf`` and a
  ``discriminator``, each type in its canonical spelling), at least one of them
  ``dense``, at most ``SpecLimits.max_layers``;
- a model gives ``input_dim`` or ``input_shape``; a spec ``compile`` or
  ``compile_config`` (not both; neither only with ``keras_json``, whose export may
  carry it), and ``compile_config`` is Keras' ``get_compile_config()``: the
  compile keys and Keras' own, which fitq drops when neutral;
- the service's bounds (``FITQ_MAX_EPOCHS``, ``FITQ_MAX_PRIORITY``, …) as maxima.

What no schema states is a rule between fields (the output layer against the
loss, a monitor that is logged, ``min_value`` ≤ ``max_value``) or between a spec
and its data (``input_dim`` and the dataset's features); docs/reliability.md
lists them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import combinations
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from fitq.service.spec import job, metrics, names, optimizers
from fitq.service.spec.base import DEFAULT_LIMITS, SpecLimits, name_key
from fitq.service.spec.job import JobSpec

REF = "#/components/schemas/"
NULL_NAMES = {"activation": "linear"}
"""Kinds whose name may be null, and what null means (Keras writes no activation as
null: ``keras_layers.activation_name``)."""


def spellings(kind: str) -> list[str]:
    """The names of ``kind`` as the document lists them: its table's canonical names,
    then its aliases (``names.REGISTRY``, ``metrics.METRICS``)."""
    if kind == "metric":
        canonical = list(dict.fromkeys(metrics.METRICS.values()))
        keys = {name_key(name) for name in canonical}
        return canonical + [alias for alias in metrics.METRICS if alias not in keys]
    return names.REGISTRY[kind].spellings


def name_tables() -> dict[str, Mapping[str, str]]:
    """Every table of names: kind → {name_key of a spelling: canonical name}."""
    return {
        **{kind: table.table for kind, table in names.REGISTRY.items()},
        "metric": metrics.METRICS,
    }


def bare_name(kind: str) -> dict[str, Any]:
    """The schema of a bare name of ``kind``: its names, aliases included. The spec
    also takes each in another spelling (Keras' class names: ``"RMSprop"``): the
    description says so; a listed spelling is what the normalized spec holds."""
    return {
        "type": "string",
        "enum": spellings(kind),
        "description": f"{_article(kind)} {kind} name. Other spellings resolve too: case, "
        "'_', '-' and spaces are ignored, so Keras' class names do.",
    }


def monitor() -> dict[str, Any]:
    """A History key a callback watches: ``loss`` or a metric, ``val_`` before for the
    validation data's; whether the spec logs it is a rule between fields."""
    keys = ["loss", *spellings("metric")]
    return {
        "type": "string",
        "enum": keys + [f"val_{key}" for key in keys],
        "description": "loss or a compiled metric, val_ before for the validation data's; "
        "it must be one the spec logs (Keras' spellings of a metric resolve too).",
    }


# ---------------------------------------------------------------- the document


def state(
    components: dict[str, Any],
    *,
    limits: SpecLimits = DEFAULT_LIMITS,
    bounds: Mapping[str, int] | None = None,
) -> None:
    """State in ``components`` (the OpenAPI document's schemas, ``JobSpec``'s among
    them, in place) what ``JobSpec`` enforces beyond what pydantic derived.
    ``bounds``: the service's maxima by top-level field (``priority``…)."""
    for schema in list(components.values()):
        for node in _nodes(schema):
            _state_names(node, components)
    for schema in components.values():
        for node in _nodes(schema):
            _discriminate(node, components)
    _state_model(components["ModelSpec"], limits)
    _state_dense(components)
    _state_optimizers(components)
    _state_callbacks(components)
    _state_job(components, limits, bounds or {})


def _nodes(root: Any) -> Iterable[dict[str, Any]]:
    """Every schema object under ``root`` (iteratively, ``root`` first)."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _state_names(node: dict[str, Any], components: Mapping[str, Any]) -> None:
    """A free string beside objects named from one table (an optimizer, a loss…) is
    a bare name of that table; an ``enum`` of a whole table's canonical names (an
    activation, a metric) takes its aliases too."""
    if set(node.get("enum", ())) and node.get("type") == "string":
        kind = _table_of(set(node["enum"]), exact=True)
        if kind is not None:
            for key in ("enum", "title", "type"):
                node.pop(key, None)
            if kind in NULL_NAMES:
                node["anyOf"] = [bare_name(kind), {"type": "null"}]
            else:
                node.update(bare_name(kind))
        return
    branches = node.get("anyOf", [])
    free = [b for b in branches if b.get("type") == "string" and len(b) == 1]
    named = {
        value
        for branch in branches
        for value in _constants(_resolve(branch, components).get("properties", {}).get("name"))
    }
    if free and named:
        kind = _table_of(named, exact=False)
        if kind is not None:
            free[0].update(bare_name(kind))


def _constants(node: Mapping[str, Any] | None) -> list[str]:
    if node is None:
        return []
    return [node["const"]] if "const" in node else list(node.get("enum", []))


def _table_of(values: set[str], *, exact: bool) -> str | None:
    """The kind whose canonical names are ``values`` (``exact``), or else the
    smallest whose canonical names hold them."""
    holding = sorted(
        (len(set(table.values())), kind)
        for kind, table in name_tables().items()
        if set(table.values()) == values or (not exact and values <= set(table.values()))
    )
    return holding[0][1] if holding else None


def _resolve(node: Mapping[str, Any], components: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref", "")
    return components.get(ref.removeprefix(REF), {}) if ref.startswith(REF) else node


def _discriminate(node: dict[str, Any], components: Mapping[str, Any]) -> None:
    """An ``anyOf`` of objects that each fix ``type`` to a constant is a discriminated
    union: ``oneOf`` (the constants make the branches exclusive) with its mapping."""
    branches = node.get("anyOf", [])
    mapping: dict[str, str] = {}
    for branch in branches:
        target = _resolve(branch, components)
        tag = target.get("properties", {}).get("type", {})
        if "$ref" not in branch or "const" not in tag or "type" not in target.get("required", []):
            return
        mapping[tag["const"]] = branch["$ref"]
    if len(mapping) > 1:
        node["oneOf"] = node.pop("anyOf")
        node["discriminator"] = {"propertyName": "type", "mapping": mapping}


def _state_model(model: dict[str, Any], limits: SpecLimits) -> None:
    layers = model["properties"]["layers"]
    layers["maxItems"] = limits.max_layers
    layers["contains"] = {"type": "object", "properties": {"type": {"const": "dense"}},
                          "required": ["type"]}  # fmt: skip
    layers["description"] = (
        "The layers, in order; at least one dense layer (the last one gives the outputs). "
        "Type names are matched as every name (case, '_', '-', spaces ignored; Keras' class "
        "names resolve): the document gives each in its canonical spelling."
    )
    # Either gives the input's size; null is as good as absent (``ModelSpec._dims``).
    for key in ("input_dim", "input_shape"):
        field = model["properties"][key]
        default = field.pop("default", None)
        model["properties"][key] = {"anyOf": [field, {"type": "null"}], "default": default}
    model["anyOf"] = [
        {"required": ["input_dim"], "properties": {"input_dim": {"type": "integer"}}},
        {"required": ["input_shape"], "properties": {"input_shape": {"type": "array"}}},
    ]


BIAS_RANK = 1
"""A bias has one axis: its constraint's ``axis`` is 0 or -1 (``Dense`` resolves it)."""


def _state_dense(components: Mapping[str, Any]) -> None:
    axes = components["MaxNorm"]["properties"]["axis"]["enum"]  # constraints.Axis
    refused = [a for a in axes if not -BIAS_RANK <= a < BIAS_RANK]
    components["Dense"]["properties"]["bias_constraint"]["not"] = {
        "type": "object",
        "required": ["axis"],
        "properties": {"axis": {"enum": refused}},
    }


def _state_optimizers(components: Mapping[str, Any]) -> None:
    """At most one of ``optimizers.CLIP_KEYS`` is set (not null), as in Keras 3; SGD's
    ``nesterov`` only with a ``momentum`` above 0."""
    for cls in optimizers.OPTIMIZER_CLASSES.values():
        components[cls.__name__]["allOf"] = [
            {
                "not": {
                    "required": list(pair),
                    "properties": {key: {"type": "number"} for key in pair},
                }
            }
            for pair in combinations(optimizers.CLIP_KEYS, 2)
        ]
    components["SGD"]["allOf"].append(  # Nesterov's step needs a momentum
        {"anyOf": [
            {"properties": {"nesterov": {"const": False}}},
            {"required": ["momentum"], "properties": {"momentum": {"exclusiveMinimum": 0}}},
        ]}
    )  # fmt: skip


def _state_callbacks(components: Mapping[str, Any]) -> None:
    for name in ("EarlyStopping", "ReduceLROnPlateau"):
        field = components[name]["properties"]["monitor"]
        field.update(monitor())


def _state_job(components: dict[str, Any], limits: SpecLimits, bounds: Mapping[str, int]) -> None:
    spec = components["JobSpec"]
    properties = spec["properties"]
    components["FitSpec"]["properties"]["epochs"]["maximum"] = limits.max_epochs
    for field, bound in bounds.items():
        _tighten(properties[field], bound)
    compile_config = dict(components["CompileSpec"])
    compile_config["properties"] = {
        **compile_config["properties"],
        **{key: {} if allowed is None else {"enum": list(allowed)}
           for key, allowed in job._KERAS_COMPILE_KEYS.items()},
    }  # fmt: skip
    compile_config["title"] = "KerasCompileConfig"
    compile_config["description"] = (
        "Keras' model.get_compile_config(): compile's keys and Keras' own, which fitq "
        "drops (each at the value shown, where one is)."
    )
    components["KerasCompileConfig"] = compile_config
    properties["compile_config"] = {"$ref": f"{REF}KerasCompileConfig"}
    spec["allOf"] = [
        {"not": {"required": ["compile", "compile_config"]}},
        {"not": {  # validation data once: a split of the training set or a dataset
            "required": ["validation_dataset_id", "fit"],
            "properties": {
                "validation_dataset_id": {"type": "string"},
                "fit": {"required": ["validation_split"],
                        "properties": {"validation_split": {"exclusiveMinimum": 0}}},
            },
        }},
        {"anyOf": [{"required": ["compile"]}, {"required": ["compile_config"]},
                   {"required": ["keras_json"]}]},
    ]  # fmt: skip


def _tighten(field: dict[str, Any], bound: int) -> None:
    """Lower ``field``'s maximum (or its number branch's) to ``bound``."""
    for node in [field, *field.get("anyOf", [])]:
        if node.get("type") in ("integer", "number"):
            node["maximum"] = min(node.get("maximum", bound), bound)


def _article(word: str) -> str:
    return "An" if word[0] in "aeiou" else "A"


def validate(data: Any, context: Mapping[str, Any]) -> JobSpec:
    """``JobSpec.model_validate(data)``, an integral number taken as an integer.

    JSON has one number type, and JSON Schema's ``integer`` is any number without a
    fraction: ``3.0`` is the integer 3 to a client that computed it (and JavaScript
    sends ``3``). The spec's strict integers refuse ``3.0``; when that is what they
    refused, the spec is read again with such numbers as ints (a real field takes an
    int as the float it is). Read as sent first, so that a refusal echoes ``1.0``."""
    try:
        return JobSpec.model_validate(data, context=context)
    except ValidationError as exc:
        if not any(_integral_refused(error) for error in exc.errors()):
            raise
    return JobSpec.model_validate(integral_numbers(data), context=context)


def _integral_refused(error: ErrorDetails) -> bool:
    value = error.get("input")
    return error["type"] == "int_type" and isinstance(value, float) and value.is_integer()


def integral_numbers(value: Any) -> Any:
    """``value`` (parsed JSON) with every float that has no fraction as an int (a copy)."""
    root: list[Any] = [value]
    stack: list[tuple[list[Any] | dict[Any, Any], Any]] = [(root, 0)]
    while stack:
        parent, key = stack.pop()
        item = parent[key]
        if isinstance(item, float) and item.is_integer():
            parent[key] = int(item)
        elif isinstance(item, dict):
            copy = dict(item)
            parent[key] = copy
            stack.extend((copy, k) for k in copy)
        elif isinstance(item, list):
            copy_list = list(item)
            parent[key] = copy_list
            stack.extend((copy_list, i) for i in range(len(copy_list)))
    return root[0]
