"""/v1/sweeps: create, list, read, trials (ranked), cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from fitq.service.api.deps import JsonBody, OwnerDep, SessionDep, SettingsDep, SweepDep
from fitq.service.api.errors import error_responses
from fitq.service.api.schemas import SweepPublic, TrialPublic, json_response
from fitq.service.jobs import submission
from fitq.service.paging import Page
from fitq.service.sweeps import read, request, service

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])

MAX_PAGE = 200
DEFAULT_PAGE = 50


@router.post(
    "",
    status_code=201,
    response_model=SweepPublic,
    responses=error_responses(401, 404, 413, 422, 429),
)
def create_sweep(
    owner: OwnerDep,  # first: a request without a valid key is a 401 before its body is read
    body: JsonBody,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Validate every trial as a job and queue them all, or none."""
    sweep = service.create(
        session,
        owner.id,
        request.parse(body),
        limits=submission.spec_limits(settings.max_epochs, settings.max_parameters),
        bounds=submission.Bounds.of(settings),
        max_queued_jobs=settings.max_queued_jobs_per_key,
    )
    return json_response(
        read.publics(session, [sweep])[0], 201, headers={"Location": f"/v1/sweeps/{sweep.id}"}
    )


@router.get("", response_model=Page[SweepPublic], responses=error_responses(401, 422))
def list_sweeps(
    owner: OwnerDep,
    session: SessionDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> Response:
    """Your sweeps, newest first."""
    page = read.list_page(session, owner.id, cursor=cursor, limit=limit)
    return json_response(
        Page[SweepPublic](items=read.publics(session, page.items), next_cursor=page.next_cursor)
    )


@router.get("/{sweep_id}", response_model=SweepPublic, responses=error_responses(401, 404))
def read_sweep(sweep: SweepDep, session: SessionDep) -> Response:
    """Status, trial counts, the best trial."""
    return json_response(read.publics(session, [sweep])[0])


@router.get(
    "/{sweep_id}/trials",
    response_model=Page[TrialPublic],
    responses=error_responses(401, 404, 422),
)
def sweep_trials(
    sweep: SweepDep,
    session: SessionDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> Response:
    """The trials, best first (trials without a value last)."""
    return json_response(read.trials_page(session, sweep, cursor=cursor, limit=limit))


@router.post(
    "/{sweep_id}/cancel",
    status_code=202,
    response_model=SweepPublic,
    responses=error_responses(401, 404),
)
def cancel_sweep(sweep: SweepDep, session: SessionDep) -> Response:
    """Cancel every trial not yet ended (idempotent)."""
    service.cancel(session, sweep)
    return json_response(read.publics(session, [sweep])[0], 202)
