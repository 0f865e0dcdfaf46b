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

router = APIRouter(tags=["events"])

LastEventId = Annotated[
    str | None,
    Header(
        description="Resume after this event id (sent by EventSource on reconnect): every "
        "later event is sent once, none before it. A value that is not an id this API "
        "sends (a browser sends back whatever it saw) is ignored, not refused.",
    ),
]

STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {sse.MEDIA_TYPE: {}},
        "description": "Server-Sent Events: `status`, `phase` and `epoch` events with an `id`; "
        "`progress` snapshots without one; `: keep-alive` comments when idle. The stream "
        "ends within seconds of its key being revoked.",
    }
}


@router.get(
    "/v1/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        **STREAM,
        204: {"description": "The job ended and the client has seen every event."},
        **error_responses(401, 404, 429),
    },
)
def job_events(
    owner: OwnerDep,
    job: JobDep,
    session: SessionDep,
    request: Request,
    last_event_id: LastEventId = None,
) -> Response:
    """A job's status changes, phase changes and epochs as they happen; the
    stream ends after the terminal status event."""
    after = sse.resume_after(last_event_id)
    if sse.nothing_left(session, job, after):
        return Response(status_code=204)
    engine = request.app.state.engine
    return _stream(request, owner.id, sse.job_reader(engine, job.id), after or 0)


@router.get(
    "/v1/events",
    response_class=StreamingResponse,
    responses={**STREAM, **error_responses(401, 429)},
)
def owner_events(owner: OwnerDep, request: Request, last_event_id: LastEventId = None) -> Response:
    """The events of every job of your key (no `progress` snapshots); open until you leave.
    Without `Last-Event-ID` it starts with the events to come."""
    engine = request.app.state.engine
    after = sse.resume_after(last_event_id)
    if after is None:
        after = sse.latest_id(engine)
    return _stream(request, owner.id, sse.owner_reader(engine, owner.id), after)


def _stream(request: Request, owner_id: str, read: Any, after: int) -> sse.SlotStream:
    state = request.app.state
    events = sse.stream(
        read,
        after,
        key_active=sse.key_checker(state.engine, owner_id),
        limiter=state.stream_limiter,
    )
    return sse.SlotStream(events, state.stream_slots, owner_id)
