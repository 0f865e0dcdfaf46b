"""Live events: ``GET /v1/jobs/{job_id}/events`` (one job, ends after its
terminal event) and ``GET /v1/events`` (every job of the key, open until the
client leaves). See ``api/sse.py`` for the wire format and the guarantees."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse

from fitq.service.api import sse
from fitq.service.api.deps import JobDep, OwnerDep, SessionDep
from fitq.service.api.errors import error_responses
from fitq.service.api.schemas import DB_INT_MAX

router = APIRouter(tags=["events"])

LastEventId = Annotated[
    int | None,
    Header(
        ge=0,
        le=DB_INT_MAX,
        description="Resume after this event id (sent by EventSource on reconnect): "
        "every later event is sent once, none before it.",
    ),
]

STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {sse.MEDIA_TYPE: {}},
        "description": "Server-Sent Events: `status`, `phase` and `epoch` events with an `id`; "
        "`progress` snapshots without one; `: keep-alive` comments when idle.",
    }
}


@router.get(
    "/v1/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        **STREAM,
        204: {"description": "The job ended and the client has seen every event."},
        **error_responses(401, 404, 422),
    },
)
def job_events(
    job: JobDep, session: SessionDep, request: Request, last_event_id: LastEventId = None
) -> Response:
    """A job's status changes, phase changes and epochs as they happen; the
    stream ends after the terminal status event."""
    if sse.nothing_left(session, job, last_event_id):
        return Response(status_code=204)
    read = sse.job_reader(request.app.state.session_factory, job.id)
    return _stream(read, last_event_id)


@router.get(
    "/v1/events",
    response_class=StreamingResponse,
    responses={**STREAM, **error_responses(401, 422)},
)
def owner_events(owner: OwnerDep, request: Request, last_event_id: LastEventId = None) -> Response:
    """The events of every job of your key (no `progress` snapshots); open until you leave.
    Without `Last-Event-ID` it starts with the events to come."""
    sessions = request.app.state.session_factory
    after = last_event_id
    if after is None:
        with sessions() as session:
            after = sse.latest_id(session)
    return _stream(sse.owner_reader(sessions, owner.id), after)


def _stream(read: Any, after: int | None) -> StreamingResponse:
    return StreamingResponse(
        sse.stream(read, after or 0),
        media_type=sse.MEDIA_TYPE,
        headers=sse.HEADERS,
    )
