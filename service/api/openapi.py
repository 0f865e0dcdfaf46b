"""The OpenAPI document, beyond what FastAPI derives from the routes:

- the body of ``POST /v1/jobs`` is the job spec's own schema (the route reads
  a plain JSON object and validates it with ``service/spec``), and that of
  ``POST /v1/sweeps`` is ``SweepCreate``'s, likewise, and that of predict is
  ``PredictRequest`` (all three are read after the key is checked, ``JsonBody``);
- ``links`` from the operations that create a resource to every operation on
  it, so a client generator (or a stateful fuzzer such as schemathesis) knows
  that ``POST /v1/jobs`` returns the ``job_id`` that ``GET /v1/jobs/{job_id}``,
  ``…/cancel``, ``…/predict`` and the rest take;
- what the API enforces on every request, stated where a schema can
  (:func:`state_input_rules`): the id alphabet of path ids and the cursor's
  pattern, no NUL in any other string, and ``model`` xor ``keras_json`` in a
  job spec (``oneOf``), so that a request that fits the document is refused
  only for what no schema can say (a CSV's content, a spec's fit to its data);
- :func:`documented_methods`, which the 405 handler names in ``Allow``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.routing import compile_path

from fitq.service import paging
from fitq.service import spec as specs
from fitq.service.api.guard import ID_PATTERN
from fitq.service.api.schemas import EvaluateRequest, PredictRequest
from fitq.service.jobs.prediction import FLOAT32_MAX
from fitq.service.jobs.submission import spec_limits
from fitq.service.settings import Settings
from fitq.service.spec import json_schema

ID_FROM_BODY = "$response.body#/id"

CREATES = [
    # (method, path, statuses that return the resource, its id parameter, the resource's path)
    ("post", "/v1/datasets", ("201",), "dataset_id", "/v1/datasets/{dataset_id}"),
    ("post", "/v1/jobs", ("201", "200"), "job_id", "/v1/jobs/{job_id}"),
    ("post", "/v1/jobs/{job_id}/cancel", ("202",), "job_id", "/v1/jobs/{job_id}"),
    ("post", "/v1/sweeps", ("201",), "sweep_id", "/v1/sweeps/{sweep_id}"),
]


def customize(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the document described above (built once)."""
    default_openapi = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = default_openapi()
        _job_spec_body(schema, app.state.settings)
        _predict_body(schema, app.state.settings.max_predict_rows)
        _sweep_body(schema)
        _evaluate_body(schema)
        _validation_errors(schema)
        state_input_rules(schema)
        add_links(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = document  # type: ignore[method-assign]


def _declare_body(schema: dict[str, Any], path: str, model: type[BaseModel]) -> dict[str, Any]:
    """State ``model`` as the JSON body of ``POST path`` (a route that reads its body
    through ``JsonBody``, after the key, so FastAPI does not know it); its schema."""
    body = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(body.pop("$defs", {}))
    components[model.__name__] = body
    schema["paths"][path]["post"]["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
        },
    }
    return body


def _job_spec_body(schema: dict[str, Any], settings: Settings) -> None:
    """The job spec, and what its model says in prose: ``model`` or ``keras_json``, one;
    the names, the layers' union and the bounds as the spec and the service's settings
    enforce them (``spec/json_schema.py``)."""
    body = _declare_body(schema, "/v1/jobs", specs.JobSpec)
    body["oneOf"] = [{"required": ["model"]}, {"required": ["keras_json"]}]
    json_schema.state(
        schema["components"]["schemas"],
        limits=spec_limits(settings.max_epochs, settings.max_parameters),
        bounds={
            "priority": settings.max_priority,
            "max_attempts": settings.max_attempts,
            "max_seconds": settings.max_job_seconds,
        },
    )


def _predict_body(schema: dict[str, Any], max_rows: int) -> None:
    """The rows and the numbers predict takes: 1 to ``FITQ_MAX_PREDICT_ROWS`` rows
    (413 past it), each number one float32 holds (422 past it). A row's width is
    the model's, which no document of the API can say."""
    body = _declare_body(schema, "/v1/jobs/{job_id}/predict", PredictRequest)
    rows = body["properties"]["inputs"]
    rows.update(minItems=1, maxItems=max_rows)
    rows["items"].update(minItems=1)
    rows["items"]["items"].update(minimum=-FLOAT32_MAX, maximum=FLOAT32_MAX)


def _sweep_body(schema: dict[str, Any]) -> None:
    """``POST /v1/sweeps`` reads a plain JSON object too (``sweeps.request.parse``)."""
    from fitq.service.sweeps.request import SweepCreate

    _declare_body(schema, "/v1/sweeps", SweepCreate)


def _evaluate_body(schema: dict[str, Any]) -> None:
    _declare_body(schema, "/v1/jobs/{job_id}/evaluate", EvaluateRequest)


def _validation_errors(schema: dict[str, Any]) -> None:
    """Every operation may answer 422 (``api/guard.py`` refuses a NUL or a bad id in
    any parameter), as ``Error`` or FastAPI's list: say so everywhere, in place of
    FastAPI's own 422 (the list only)."""
    from fitq.service.api.errors import DESCRIPTIONS  # errors.py imports this module

    refs = [
        {"$ref": "#/components/schemas/Error"},
        {"$ref": "#/components/schemas/ValidationErrors"},
    ]
    for operations in schema["paths"].values():
        for operation in operations.values():
            operation["responses"]["422"] = {
                "description": DESCRIPTIONS[422],
                "content": {"application/json": {"schema": {"anyOf": refs}}},
            }
    schema["components"]["schemas"].pop("HTTPValidationError", None)
    schema["components"]["schemas"].pop("ValidationError", None)


NO_NUL = r"^[^\x00]*$"
"""Any string a request carries: PostgreSQL cannot hold a NUL (``untrusted``)."""


def state_input_rules(schema: dict[str, Any]) -> None:
    """State in ``schema`` (in place) the rules ``api/guard.py``, ``untrusted`` and
    ``paging`` enforce on every request: a ``{…_id}`` path parameter matches
    ``ID_PATTERN``, a ``cursor`` the cursor's pattern, and the other strings of
    parameters and of a body's own fields hold no NUL.

    Strings deeper in a body (a layer's activation, an optimizer's name) are
    names the spec checks against what fitq knows; a NUL pattern on each of them
    (and a ``propertyNames`` on each open object) made fuzzing the job spec half
    again as slow, for nothing a name rule would not say better."""
    components = schema.get("components", {}).get("schemas", {})
    for operations in schema["paths"].values():
        for operation in operations.values():
            for param in operation.get("parameters", []):
                if param["in"] == "path" and param["name"].endswith("_id"):
                    rule = {"pattern": ID_PATTERN, "minLength": 1, "maxLength": 64}
                elif param["name"] == "cursor":
                    rule = {"pattern": paging.CURSOR_PATTERN, "maxLength": paging.CURSOR_MAX_CHARS}
                else:
                    rule = {"pattern": NO_NUL}
                _strings(param["schema"], rule)
            for content in operation.get("requestBody", {}).get("content", {}).values():
                body = _resolve(content.get("schema", {}), components)
                for field in body.get("properties", {}).values():
                    _strings(field, {"pattern": NO_NUL})


def _resolve(node: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        resolved: dict[str, Any] = components[ref.rsplit("/", 1)[1]]
        return resolved
    return node


def _strings(node: dict[str, Any], rule: dict[str, Any]) -> None:
    """Add ``rule`` to ``node`` if it is a free string schema, or to each such
    branch of its ``anyOf`` (an optional string), or to its items (a list of them)."""
    free = not ({"pattern", "enum", "const", "format"} & node.keys())
    if node.get("type") == "string" and free:
        node.update(rule)
    for branch in node.get("anyOf", []):
        _strings(branch, rule)
    if isinstance(node.get("items"), dict):
        _strings(node["items"], rule)


def add_links(schema: dict[str, Any]) -> None:
    """Add to ``schema`` (in place) a link from each creating response to each
    operation under the resource's path, named after its operation id."""
    paths: dict[str, dict[str, Any]] = schema["paths"]
    for method, path, statuses, param, resource in CREATES:
        targets = {
            op["operationId"]: op
            for target, ops in paths.items()
            if target == resource or target.startswith(resource + "/")
            for op in ops.values()
        }
        links = {
            _link_name(op_id): {"operationId": op_id, "parameters": {param: ID_FROM_BODY}}
            for op_id in sorted(targets)
        }
        responses = paths[path][method]["responses"]
        for status in statuses:
            responses[status]["links"] = links


def _link_name(operation_id: str) -> str:
    """``read_job_v1_jobs__job_id__get`` → ``read_job`` (FastAPI appends path and method)."""
    return operation_id.split("_v1_", 1)[0]


def documented_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document gives ``path`` (HEAD with GET, as Starlette serves it)."""
    methods: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        if compile_path(template)[0].match(path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)
