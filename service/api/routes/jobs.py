"""/v1/jobs: submit, list, read, History, cancel, delete, model (its formats), predict, evaluate."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from fitq.service import queue
from fitq.service.api import reads
from fitq.service.api.deps import (
    BEARER_SECURITY,
    JobDep,
    JsonBody,
    OwnerDep,
    SessionDep,
    SettingsDep,
    StoreDep,
    validated,
)
from fitq.service.api.errors import error_responses
from fitq.service.api.schemas import (
    DB_INT_MAX,
    EvaluateRequest,
    Evaluation,
    History,
    JobPublic,
    JobStatus,
    Prediction,
    PredictRequest,
    json_response,
)
from fitq.service.jobs import (
    deletion,
    evaluation,
    listing,
    model_formats,
    prediction,
    read,
    submission,
)
from fitq.service.paging import Page
from fitq.service.spec.job import MAX_TAGS, Tag

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_PAGE = 200
DEFAULT_PAGE = 50
MAX_IDEMPOTENCY_KEY_CHARS = 200
MAX_NAME_FILTER_CHARS = 201
"""A job's name (200 characters at most) and the prefix wildcard."""


@router.post(
    "",
    status_code=201,
    response_model=JobPublic,
    responses={
        200: {"model": JobPublic, "description": "A replay: the job this Idempotency-Key made."},
        **error_responses(401, 404, 409, 422, 429),
    },
)
def submit_job(
    owner: OwnerDep,  # first: a request without a valid key is a 401 before its body is read
    body: JsonBody,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=MAX_IDEMPOTENCY_KEY_CHARS,
            description="The same key and body return the same job (200); another body is a 409.",
        ),
    ] = None,
) -> Response:
    """Validate a spec against its datasets and queue it."""
    job, created = submission.submit(
        session,
        owner.id,
        body,
        idempotency_key=idempotency_key,
        max_epochs=settings.max_epochs,
        max_parameters=settings.max_parameters,
        max_queued_jobs=settings.max_queued_jobs_per_key,
        bounds=submission.Bounds.of(settings),
    )
    return json_response(
        read.publics(session, [job])[0],
        201 if created else 200,
        headers={"Location": f"/v1/jobs/{job.id}"},
    )


@router.get("", response_model=Page[JobPublic], responses=error_responses(401, 422))
def list_jobs(
    owner: OwnerDep,
    session: SessionDep,
    status: Annotated[
        list[JobStatus] | None, Query(description="Any of these statuses (repeat it).")
    ] = None,
    tag: Annotated[
        list[Tag] | None,
        Query(max_length=MAX_TAGS, description="Every one of these tags (repeat it)."),
    ] = None,
    name: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_NAME_FILTER_CHARS,
            description="This name exactly; ending with '*', every name that starts with the rest.",
        ),
    ] = None,
    sweep_id: Annotated[str | None, Query(description="Only this sweep's trials.")] = None,
    created_after: Annotated[
        listing.Instant | None,
        Query(description="Created at or after this time (ISO 8601 with its time zone)."),
    ] = None,
    created_before: Annotated[
        listing.Instant | None,
        Query(description="Created before this time (ISO 8601 with its time zone)."),
    ] = None,
    sort: Annotated[
        str,
        Query(
            pattern=listing.SORT_PATTERN,
            description="-created_at (newest first, the default), created_at, or a metric "
            "of the latest epoch: val_loss ascending, -val_accuracy descending (jobs "
            "without it last).",
        ),
    ] = listing.DEFAULT_SORT,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> Response:
    """Your jobs, filtered and sorted (newest first unless asked)."""
    filters = listing.Filters(
        statuses=tuple(status or ()),
        tags=tuple(tag or ()),
        name=name,
        sweep_id=sweep_id,
        created_after=created_after,
        created_before=created_before,
    )
    page = listing.list_page(session, owner.id, filters, sort=sort, cursor=cursor, limit=limit)
    return json_response(
        Page[JobPublic](items=read.publics(session, page.items), next_cursor=page.next_cursor)
    )


@router.get(
    "/{job_id}",
    response_model=JobPublic,
    responses=error_responses(401, 404),
    openapi_extra=BEARER_SECURITY,
)
async def read_job(job_id: str, request: Request) -> Response:
    """Status, phase, progress, ETA, latest metrics, status history, timestamps."""
    return await reads.serve(
        request, lambda conn, authorization: reads.job(conn, authorization, job_id)
    )


@router.get(
    "/{job_id}/metrics",
    response_model=History,
    responses=error_responses(401, 404, 422),
    openapi_extra=BEARER_SECURITY,
)
async def job_history(
    job_id: str,
    request: Request,
    after: Annotated[
        int | None, Query(ge=0, le=DB_INT_MAX, description="Only the epochs after this one.")
    ] = None,
) -> Response:
    """The epoch-by-epoch History (Keras names)."""
    return await reads.serve(
        request, lambda conn, authorization: reads.history(conn, authorization, job_id, after)
    )


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=JobPublic,
    responses=error_responses(401, 404),
)
def cancel_job(job: JobDep, session: SessionDep) -> Response:
    """Cancel: a queued job at once, a running one at its next step (idempotent)."""
    queue.request_cancel(session, job.id)
    session.refresh(job)
    return json_response(read.publics(session, [job])[0], 202)


@router.delete(
    "/{job_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(401, 404, 409),
)
def delete_job(job: JobDep, session: SessionDep, store: StoreDep) -> Response:
    """Delete a job that ended, with its History, events and files (409 while it is
    queued or running: cancel it first; for a sweep's trial, until the sweep ended)."""
    deletion.delete_job(session, store, job)
    return Response(status_code=204)


@router.get(
    "/{job_id}/model",
    response_class=Response,
    responses={
        200: {
            "content": {"application/octet-stream": {}},
            "description": "safetensors (default): layers.{i}.kernel [in, out], layers.{i}.bias; "
            "the spec in the metadata key fitq_spec. keras: a Keras 3 .keras archive. onnx: an "
            "ONNX model, input x [N, input_dim] float32.",
        },
        **error_responses(401, 404, 409, 422),
    },
)
def download_model(
    job: JobDep,
    store: StoreDep,
    format: Annotated[
        model_formats.ModelFormat, Query(description="safetensors, keras or onnx.")
    ] = "safetensors",
) -> Response:
    """The trained model in fitq's safetensors, Keras or ONNX (409 until the job succeeded)."""
    model = model_formats.model_file(store, job, format)
    filename = _safe_filename(job.name or f"job-{job.id}") + model.extension
    return Response(
        content=model.content,
        media_type=model.media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post(
    "/{job_id}/evaluate",
    response_model=Evaluation,
    responses=error_responses(401, 404, 409, 422),
)
def evaluate(
    owner: OwnerDep,  # first: the key is checked before the body is read (the job after it)
    body: JsonBody,
    job: JobDep,
    session: SessionDep,
    store: StoreDep,
) -> Response:
    """Keras' evaluate of the trained model on a stored dataset."""
    dataset_id = validated(EvaluateRequest, body).dataset_id
    metrics = evaluation.evaluate(session, store, job, owner.id, dataset_id)
    return json_response(Evaluation(metrics=metrics))


@router.post(
    "/{job_id}/predict",
    response_model=Prediction,
    responses=error_responses(401, 404, 409, 413, 422),
)
def predict(
    owner: OwnerDep,  # first: the key is checked before the body is read (the job after it)
    body: JsonBody,
    job: JobDep,
    store: StoreDep,
    settings: SettingsDep,
) -> Response:
    """Apply the trained model to rows of features."""
    inputs = validated(PredictRequest, body).inputs
    result = prediction.predict(
        store,
        job,
        inputs,
        max_rows=settings.max_predict_rows,
        max_bytes=settings.predict_max_bytes,
    )
    return json_response(Prediction(**result))


def _safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:100] or "model"
