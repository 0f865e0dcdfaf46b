"""OpenAPI ``links`` from the operations that create a resource to every
operation on it, so a client generator (or a stateful fuzzer such as
schemathesis) knows that ``POST /v1/jobs`` returns the ``job_id`` that
``GET /v1/jobs/{job_id}``, ``…/cancel``, ``…/predict`` and the rest take."""

from __future__ import annotations

from typing import Any

ID_FROM_BODY = "$response.body#/id"

CREATES = [
    # (method, path, statuses that return the resource, its id parameter, the resource's path)
    ("post", "/v1/datasets", ("201",), "dataset_id", "/v1/datasets/{dataset_id}"),
    ("post", "/v1/jobs", ("201", "200"), "job_id", "/v1/jobs/{job_id}"),
    ("post", "/v1/jobs/{job_id}/cancel", ("202",), "job_id", "/v1/jobs/{job_id}"),
]


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
