"""Request dependencies: the settings, the store, one database session per
request with its one commit point, the caller's key, and the load + 404 +
owner check of a dataset, a job or a sweep in one place (``JobDep`` through the
read model, ``jobs/read.py``; ``SweepDep`` through ``sweeps/read.py``) — another
key's ids are invisible by construction."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from fitq.service import auth, untrusted
from fitq.service.datasets import service as datasets
from fitq.service.db.engine import reading
from fitq.service.db.models import Dataset, Job, Sweep
from fitq.service.errors import InvalidInput, PayloadTooLarge
from fitq.service.jobs import read
from fitq.service.settings import Settings
from fitq.service.store import ArtifactStore
from fitq.service.sweeps import read as sweeps_read

bearer = HTTPBearer(
    auto_error=False,
    description="An API key: `Authorization: Bearer fitq_…` (`fitq keys create NAME`).",
)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> ArtifactStore:
    store: ArtifactStore = request.app.state.store
    return store


def get_session(request: Request) -> Iterator[Session]:
    """The request's session, and its one commit point: committed once the
    route has returned (scope "function": before the response is sent),
    rolled back when it raised.

    Nothing between the route and this commit may wait for the thread pool
    (FastAPI runs this exit on a thread of its own): routes return a
    ``Response`` (``json_response``), so FastAPI has no model to serialize on
    a pool thread first. A transaction that holds a lock (the insert that 49
    concurrent same-key submissions wait on) then always reaches its commit,
    instead of queueing behind the threads blocked on that very lock.
    """
    session: Session = request.app.state.session_factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
"""Declares the bearer scheme in the OpenAPI document; the key is checked by
``get_owner``."""

BEARER_SECURITY: dict[str, Any] = {"security": [{bearer.scheme_name: []}]}
"""``openapi_extra`` of the hot read routes, which check the key inside their
own statement: the same declaration as ``BearerDep`` without a dependency to
solve on every request."""


def get_owner(request: Request, _credentials: BearerDep) -> auth.Owner:
    """The key of the request (401 without a valid one), read on a connection
    of its own without a transaction: on SQLite a transaction takes the write
    lock (BEGIN IMMEDIATE), and an upload must not hold it while its body
    streams in."""
    with reading(request.app.state.engine) as connection:
        return auth.authenticate(connection, request.headers.get("authorization"))


OwnerDep = Annotated[auth.Owner, Depends(get_owner)]


async def json_body(request: Request) -> Any:
    """The request body parsed as JSON (``untrusted.loads``: every string storable,
    every number usable), counted while it streams in: 413 as soon as it passes
    ``FITQ_MAX_JSON_BYTES`` (or declares more), never read whole first.

    Every JSON body of the API comes through here, after the key was checked (a
    route lists ``OwnerDep`` or ``JobDep`` before it): a request without a valid
    key is refused before its body is read."""
    limit = request.app.state.settings.max_json_bytes
    too_large = PayloadTooLarge(
        f"the body is over the limit of {limit} bytes (FITQ_MAX_JSON_BYTES)"
    )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise too_large
    if not chunks.strip():
        raise InvalidInput("the body is empty; send a JSON object", loc=["body"])
    return untrusted.loads(chunks)


JsonBody = Annotated[Any, Depends(json_body)]

M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], body: Any) -> M:
    """A ``JsonBody`` as ``model``; what does not fit is FastAPI's own 422 (a list,
    each ``loc`` starting at ``body``), as if FastAPI had read the body itself."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def get_dataset(dataset_id: str, owner: OwnerDep, session: SessionDep) -> Dataset:
    """The dataset of the path, if the caller may see it (built-ins: everyone)."""
    return datasets.get(session, owner.id, dataset_id)


def get_job(job_id: str, owner: OwnerDep, session: SessionDep) -> Job:
    """The job of the path, if it is the caller's."""
    return read.get(session, owner.id, job_id)


def get_sweep(sweep_id: str, owner: OwnerDep, session: SessionDep) -> Sweep:
    """The sweep of the path, if it is the caller's."""
    return sweeps_read.get(session, owner.id, sweep_id)


DatasetDep = Annotated[Dataset, Depends(get_dataset)]
JobDep = Annotated[Job, Depends(get_job)]
SweepDep = Annotated[Sweep, Depends(get_sweep)]
