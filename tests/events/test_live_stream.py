"""The event stream of a job that trains, read from outside through httpx:
disconnected mid-way, resumed with ``Last-Event-ID``; every epoch arrives
exactly once and in order, through the terminal event. On SQLite (``fitq
up``) and on PostgreSQL (two ``fitq api`` and a ``fitq worker``: the resumed
stream comes from the other API process)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from fitq.service.client import Client, ServerEvent, parse_sse
from tests.support.specs import digits_spec
from tests.support.stack import Stack, fitq_up, live_stack

pytestmark = pytest.mark.slow

EPOCHS = 8
SPEC = digits_spec(hidden=(128,), fit={"epochs": EPOCHS, "batch_size": 8})
"""A second or so per epoch: the first connection leaves while it trains."""


@contextmanager
def live_fitq(backend: str, tmp: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    if backend == "sqlite":
        with fitq_up(tmp) as live:  # one API: the reconnect goes to the same process
            yield live
    else:
        url = str(request.getfixturevalue("postgres_url"))
        with live_stack(tmp, database_url=url, apis=2, FITQ_LEASE_SECONDS="10") as live:
            yield live


def read(url: str, key: str, job_id: str, last_event_id: int | None, stop_after_epochs: int | None):
    headers = {"Authorization": f"Bearer {key}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    events: list[ServerEvent] = []
    timeout = httpx.Timeout(10, read=60)
    with httpx.stream(
        "GET", f"{url}/v1/jobs/{job_id}/events", headers=headers, timeout=timeout
    ) as r:
        assert r.status_code == 200
        for event in parse_sse(r.iter_lines()):
            events.append(event)
            epochs = [e for e in events if e.kind == "epoch"]
            if stop_after_epochs is not None and len(epochs) >= stop_after_epochs:
                break  # leaving the block closes the connection mid-stream
    return events


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_resumed_stream_misses_nothing_and_repeats_nothing(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with live_fitq(backend, tmp_path, request) as live:
        first_api, second_api = live.urls[0], live.urls[-1]
        with Client(first_api, live.key) as client:
            job = client.submit(SPEC)
        before = read(first_api, live.key, job.id, None, stop_after_epochs=2)
        last_id = [e.id for e in before if e.id is not None][-1]
        after = read(second_api, live.key, job.id, last_id, stop_after_epochs=None)

    durable = [e for e in before + after if e.id is not None]
    ids = [e.id for e in durable]
    assert ids == sorted(ids) and len(ids) == len(set(ids)), ids
    assert [e.data["epoch"] for e in durable if e.kind == "epoch"] == list(range(1, EPOCHS + 1))
    statuses = [e.data["status"] for e in durable if e.kind == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    assert durable[-1].kind == "status"  # the stream ended after the terminal event
    phases = [e.data["phase"] for e in durable if e.kind == "phase"]
    assert phases == ["loading_data", "training", "saving"]
    assert any(e.kind == "progress" for e in after)
