"""The OpenAPI document, beyond what FastAPI derives from the routes:

- the body of ``POST /v1/jobs`` is the job spec's own schema (the route reads
  a plain JSON object and validates it with ``service/spec``), and that of
  ``POST /v1/sweeps`` is ``SweepCreate``'s, likewise, and that of predict is
  ``PredictRequest`` (all three are read after the key is checked, ``JsonBody``);
- ``links`` from the operations that create a resource to every operation on
  it, so a client generator (or a stateful fuzzer such as schemathesis) knows
  that ``POST /v1/jobs`` returns the ``job_id`` that ``GET /v1/jobs/{job_id}``,
  ``…/cancel``, ``…/predict`` and the rest take;
- :func:`documented_methods`, which the 405 handler names in ``Allow``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.routing import compile_path

from fitq.service import spec as specs
from fitq.service.api.schemas import PredictRequest

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
        _job_spec_body(schema)
        _predict_body(schema)
        _sweep_body(schema)
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


def _job_spec_body(schema: dict[str, Any]) -> None:
    """The job spec, and what its model says in prose: ``model`` or ``keras_json``, one."""
    body = _declare_body(schema, "/v1/jobs", specs.JobSpec)
    body["oneOf"] = [{"required": ["model"]}, {"required": ["keras_json"]}]


def _predict_body(schema: dict[str, Any]) -> None:
    _declare_body(schema, "/v1/jobs/{job_id}/predict", PredictRequest)


def _sweep_body(schema: dict[str, Any]) -> None:
    """``POST /v1/sweeps`` reads a plain JSON object too (``sweeps.request.parse``)."""
    from fitq.service.sweeps.request import SweepCreate

    body = SweepCreate.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema["components"]["schemas"]
    components.update(body.pop("$defs", {}))
    components["SweepCreate"] = body
    schema["paths"]["/v1/sweeps"]["post"]["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SweepCreate"}}},
    }


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
