"""/v1/datasets: upload, list, read, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from fitq.service.api.deps import DatasetDep, OwnerDep, SessionDep, SettingsDep, StoreDep
from fitq.service.api.errors import error_responses
from fitq.service.api.schemas import DatasetPublic, json_response
from fitq.service.api.upload import FILE_FIELD, receive_upload
from fitq.service.datasets import service as datasets
from fitq.service.datasets.limits import Limits
from fitq.service.paging import Page

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

MAX_PAGE = 200
DEFAULT_PAGE = 50

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILE_FIELD],
                    "additionalProperties": False,  # any other field is a 422 (upload.py)
                    "properties": {
                        FILE_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "CSV/TSV (header row), Parquet, or NPZ (arrays x, y).",
                        },
                        "name": {
                            "type": "string",
                            "maxLength": datasets.MAX_NAME_CHARS,
                            "description": "Default: the file's name.",
                        },
                        "label": {
                            "type": "string",
                            "maxLength": 1024,  # upload.py caps each field at 4096 bytes
                            "description": "The target column (CSV/TSV/Parquet); default the last.",
                        },
                        "task": {
                            "type": "string",
                            "enum": ["classification", "regression"],
                            "description": "Override the task kind the target looks like.",
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=201,
    response_model=DatasetPublic,
    openapi_extra=UPLOAD_BODY,
    responses=error_responses(401, 413, 422),
)
async def upload_dataset(
    request: Request, owner: OwnerDep, session: SessionDep, store: StoreDep, settings: SettingsDep
) -> Response:
    """Upload a dataset (streamed; over the upload limit it is a 413)."""
    upload = await receive_upload(request, max_file_bytes=settings.max_upload_bytes)
    try:
        new = datasets.NewUpload(
            path=upload.path,
            filename=upload.filename,
            sha256=upload.sha256,
            size_bytes=upload.size_bytes,
            name=upload.fields.get("name"),
            label=upload.fields.get("label"),
            task=upload.fields.get("task"),
        )
        row = await run_in_threadpool(
            datasets.create,
            session,
            store,
            owner.id,
            new,
            limits=Limits.of(settings),
            max_stored_bytes=settings.max_stored_bytes_per_key,
        )
        return json_response(datasets.public(row), 201)
    finally:
        upload.remove()


@router.get("", response_model=Page[DatasetPublic], responses=error_responses(401, 422))
def list_datasets(
    owner: OwnerDep,
    session: SessionDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> Response:
    """The built-in datasets, then yours, newest first."""
    page = datasets.list_page(session, owner.id, cursor, limit)
    return json_response(page.map(datasets.public))


@router.get("/{dataset_id}", response_model=DatasetPublic, responses=error_responses(401, 404))
def read_dataset(dataset: DatasetDep) -> Response:
    """One dataset."""
    return json_response(datasets.public(dataset))


@router.delete(
    "/{dataset_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(401, 404, 409),
)
def delete_dataset(dataset: DatasetDep, session: SessionDep, store: StoreDep) -> Response:
    """Delete an upload (409 while a job that has not ended uses it, or for a built-in)."""
    datasets.delete_dataset(session, store, dataset)
    return Response(status_code=204)
