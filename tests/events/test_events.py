"""Job events: written with each change (queue transitions, phases, epochs),
shown as the job's status history, phase and ETA, and streamed by
``GET /v1/jobs/{id}/events`` (in process: streams of jobs that end)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from fitq.service import queue
from fitq.service.api import sse
from fitq.service.client import ServerEvent, parse_sse
from fitq.service.db.engine import engine_for, session_factory, transaction
from fitq.service.db.models import Job, JobEvent, utcnow
from tests.conftest import SPEC, Owner

pytestmark = pytest.mark.anyio

EPOCH_METRICS = {"loss": 1.0, "accuracy": 0.5}


def events_of(body: str) -> list[ServerEvent]:
    return list(parse_sse(iter(body.splitlines())))


def durable(events: list[ServerEvent]) -> list[tuple[str, Any]]:
    """(kind, the status, phase or epoch) of the events with an id."""
    keys = {"status": "status", "phase": "phase", "epoch": "epoch"}
    return [(e.kind, e.data[keys[e.kind]]) for e in events if e.id is not None]


async def submit(client: httpx.AsyncClient, owner: Owner, **fit: Any) -> str:
    spec = {**SPEC, "fit": {**SPEC["fit"], **fit}}
    response = await client.post("/v1/jobs", json=spec, headers=owner.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def claim(url: str) -> queue.Claim:
    with transaction(url) as session:
        got = queue.claim(session, "test-worker", 30)
    assert got is not None
    return got


def write(url: str, fn: Callable[..., None], *args: Any, **kw: Any) -> None:
    with transaction(url) as session:
        fn(session, *args, **kw)


def train(url: str, c: queue.Claim, epochs: int, *, finish: bool = True) -> None:
    """What a worker writes for a job, without the engine."""
    write(url, queue.record_phase, c.job_id, c.attempt, "loading_data")
    write(url, queue.record_phase, c.job_id, c.attempt, "training")
    for epoch in range(1, epochs + 1):
        write(url, queue.record_progress, c.job_id, c.attempt, epoch=epoch, step=5, steps=10)
        write(
            url,
            queue.record_epoch,
            c.job_id,
            c.attempt,
            epoch=epoch,
            metrics={"loss": 1.0 / epoch, "accuracy": 0.5},
            seconds=2.0,
            samples_per_second=100.0,
            checkpoint_key=None,
        )
    if finish:
        write(url, queue.record_phase, c.job_id, c.attempt, "saving")
        write(url, queue.finish, c.job_id, c.attempt, model_key="m", test_metrics=None)


class TestJobResource:
    async def test_a_new_job_has_its_queued_status_in_its_history(
        self, client: httpx.AsyncClient, owner: Owner
    ) -> None:
        job_id = await submit(client, owner)
        body = (await client.get(f"/v1/jobs/{job_id}", headers=owner.headers)).json()
        assert [c["status"] for c in body["status_history"]] == ["queued"]
        assert body["phase"] is None and body["eta_seconds"] is None

    async def test_a_running_job_shows_its_phase_and_an_eta_from_its_epoch_times(
        self, client: httpx.AsyncClient, owner: Owner, database_url: str
    ) -> None:
        job_id = await submit(client, owner, epochs=5)
        c = claim(database_url)
        train(database_url, c, 2, finish=False)
        write(database_url, queue.record_progress, job_id, c.attempt, epoch=3, step=5, steps=10)
        body = (await client.get(f"/v1/jobs/{job_id}", headers=owner.headers)).json()
        assert body["phase"] == "training"
        # 2.5 epochs left (half of epoch 3, then 4 and 5) at 2 s each
        assert body["eta_seconds"] == pytest.approx(5.0)
        assert [c["status"] for c in body["status_history"]] == ["queued", "running"]

    async def test_a_finished_job_has_its_whole_history_and_no_phase(
        self, client: httpx.AsyncClient, owner: Owner, database_url: str
    ) -> None:
        job_id = await submit(client, owner)
        train(database_url, claim(database_url), 3)
        listed = (await client.get("/v1/jobs", headers=owner.headers)).json()["items"]
        (body,) = [j for j in listed if j["id"] == job_id]
        history = body["status_history"]
        assert [(c["status"], c["attempt"]) for c in history] == [
            ("queued", 0),
            ("running", 1),
            ("succeeded", 1),
        ]
        assert history[0]["at"] <= history[1]["at"] <= history[2]["at"]
        assert body["phase"] is None and body["eta_seconds"] is None


class TestTransitionsWriteEvents:
    def kinds(self, url: str, job_id: str) -> list[tuple[str, dict[str, Any]]]:
        with session_factory(url)() as session:
            rows = session.scalars(
                select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
            )
            return [(row.kind, row.data) for row in rows]

    async def test_cancelling_a_queued_job(
        self, client: httpx.AsyncClient, owner: Owner, database_url: str
    ) -> None:
        job_id = await submit(client, owner)
        for _ in range(2):  # idempotent: one event
            await client.post(f"/v1/jobs/{job_id}/cancel", headers=owner.headers)
        statuses = [d["status"] for k, d in self.kinds(database_url, job_id) if k == "status"]
        assert statuses == ["queued", "cancelled"]

    async def test_hand_back_failure_and_a_lost_worker(
        self, client: httpx.AsyncClient, owner: Owner, database_url: str
    ) -> None:
        job_id = await submit(client, owner)
        c = claim(database_url)
        write(database_url, queue.requeue, job_id, c.attempt)
        c = claim(database_url)
        write(database_url, queue.fail, job_id, c.attempt, "loss is NaN at epoch 1, step 3")
        events = self.kinds(database_url, job_id)
        assert [(d["status"], d["attempt"]) for _, d in events] == [
            ("queued", 0),
            ("running", 1),
            ("queued", 1),
            ("running", 2),
            ("failed", 2),
        ]
        assert events[-1][1]["error"] == "loss is NaN at epoch 1, step 3"

        lost_id = await submit(client, owner)
        c = claim(database_url)
        with transaction(database_url) as session:
            session.execute(
                update(Job)
                .where(Job.id == lost_id)
                .values(max_attempts=1, lease_expires_at=utcnow() - timedelta(seconds=1))
            )
        with transaction(database_url) as session:
            assert queue.reap_expired(session) == 1
        last = self.kinds(database_url, lost_id)[-1][1]
        assert last["status"] == "failed" and "worker lost" in last["error"]

    def test_an_unknown_phase_is_refused(self, database_url: str) -> None:
        with transaction(database_url) as session, pytest.raises(ValueError, match="phase"):
            queue.record_phase(session, "nope", 1, "thinking")


class TestJobStream:
    async def stream(
        self, client: httpx.AsyncClient, owner: Owner, job_id: str, **headers: str
    ) -> httpx.Response:
        return await client.get(f"/v1/jobs/{job_id}/events", headers={**owner.headers, **headers})

    async def test_a_finished_job_streams_everything_in_order_then_ends(
        self, client: httpx.AsyncClient, owner: Owner, database_url: str
    ) -> None:
        job_id = await submit(client, owner)
        train(database_url, claim(database_url), 3)
        response = await self.stream(client, owner, job_id)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = events_of(response.text)
        assert events[0].kind == "progress" and events[0].id is None
        assert events[0].data["status"] == "succeeded"
        assert durable(events) == [
            ("status", "queued"),
            ("status", "running"),
            ("phase", "loading_data"),
            ("phase", "training"),
            ("epoch", 1),
            ("epoch", 2),
            ("epoch", 3),
            ("phase", "saving"),
            ("status", "succeeded"),
        ]
        ids = [e.id for e in events if e.id is not None]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        epoch = next(e for e in events if e.kind == "epoch")
        assert epoch.data["job_id"] == job_id
        assert {"loss", "accuracy", "seconds", "samples_per_second", "at"} <= set(epoch.data)

    async def test_last_event_id_resumes_after_it_and_past_the_end_is_204(
        self, client: httpx.AsyncClient, owner: Owner, database_url: str
    ) -> None:
        job_id = await submit(client, owner)
        train(database_url, claim(database_url), 3)
        events = events_of((await self.stream(client, owner, job_id)).text)
        first_epoch = next(e for e in events if e.kind == "epoch")
        resumed = events_of(
            (
                await self.stream(client, owner, job_id, **{"Last-Event-ID": str(first_epoch.id)})
            ).text
        )
        assert durable(resumed) == [
            ("epoch", 2),
            ("epoch", 3),
            ("phase", "saving"),
            ("status", "succeeded"),
        ]
        last = str(events[-1].id)
        assert (
            await self.stream(client, owner, job_id, **{"Last-Event-ID": last})
        ).status_code == 204

    async def test_another_keys_job_is_404_and_no_key_401(
        self, client: httpx.AsyncClient, owner: Owner, make_owner: Callable[..., Owner]
    ) -> None:
        job_id = await submit(client, owner)
        other = make_owner()
        assert (await self.stream(client, other, job_id)).status_code == 404
        assert (await client.get(f"/v1/jobs/{job_id}/events")).status_code == 401

    @pytest.mark.parametrize("last_event_id", ["soon", "-1", "2147483648", "1.5", ""])
    async def test_a_last_event_id_that_is_no_id_is_ignored(
        self, client: httpx.AsyncClient, owner: Owner, database_url: str, last_event_id: str
    ) -> None:
        """A browser sends back whatever id it saw: the stream starts from the
        beginning, as without the header (it was a 422)."""
        job_id = await submit(client, owner)
        train(database_url, claim(database_url), 1)
        whole = durable(events_of((await self.stream(client, owner, job_id)).text))
        r = await self.stream(client, owner, job_id, **{"Last-Event-ID": last_event_id})
        assert r.status_code == 200, r.text
        assert durable(events_of(r.text)) == whole


class TestStreamLoop:
    """The generator itself, over a scripted reader and a fake clock."""

    async def collect(self, ticks: list[sse.Tick], **kw: Any) -> list[str]:
        seen: list[tuple[int, set[int]]] = []
        clock = iter(range(0, 1000, 10))
        kw.setdefault("key_active", lambda: True)

        def read(after: int, skip: set[int]) -> sse.Tick:
            seen.append((after, skip))
            return ticks.pop(0)

        chunks = [
            chunk
            async for chunk in sse.stream(
                read, 0, poll_seconds=0, clock=lambda: float(next(clock)), **kw
            )
        ]
        self.seen = seen
        return chunks

    def event(self, event_id: int) -> sse.Event:
        return sse.Event(event_id, "j", "epoch", {"epoch": event_id}, utcnow())

    async def test_an_idle_stream_sends_keep_alive_comments(self) -> None:
        ticks = [sse.Tick([]) for _ in range(3)] + [sse.Tick([], None, True)]
        chunks = await self.collect(ticks, keepalive_seconds=10)  # the clock ticks by 10
        assert chunks[0].startswith("retry:")
        assert chunks.count(": keep-alive\n\n") == 3

    async def test_a_late_commit_below_a_sent_id_is_sent_once(self) -> None:
        ticks = [
            sse.Tick([self.event(2)]),
            sse.Tick([self.event(1)]),  # id 1 committed after id 2 was sent
            sse.Tick([]),
            sse.Tick([]),
            sse.Tick([], None, True),
        ]
        chunks = await self.collect(ticks, keepalive_seconds=1000, settle_seconds=15)
        assert [c.split("\n")[0] for c in chunks if c.startswith("id:")] == ["id: 2", "id: 1"]
        # the reader was asked to skip what was sent, and the cursor moved once both settled
        assert self.seen[1] == (0, {2}) and self.seen[2] == (0, {1, 2})
        assert self.seen[4] == (2, set())

    async def test_a_revoked_key_ends_the_stream_at_the_next_check(self) -> None:
        checks: list[bool] = []

        def key_active() -> bool:
            checks.append(len(checks) < 2)  # revoked before the third check
            return checks[-1]

        ticks = [sse.Tick([self.event(i)]) for i in range(1, 100)]  # never terminal
        chunks = await self.collect(ticks, key_active=key_active, key_check_seconds=20)
        # the clock ticks by 10 a poll: a check every other poll, the third one ends it
        assert checks == [True, True, False]
        assert len(self.seen) == 6
        assert [c.split("\n")[0] for c in chunks if c.startswith("id:")][-1] == "id: 6"


async def test_the_all_jobs_stream_carries_every_job_of_the_key_only(
    client: httpx.AsyncClient, owner: Owner, make_owner: Callable[..., Owner], database_url: str
) -> None:
    mine = [await submit(client, owner) for _ in range(2)]
    other = make_owner()
    await submit(client, other)
    read = sse.owner_reader(engine_for(database_url), owner.id)
    chunks = sse.stream(read, 0, poll_seconds=0, key_active=lambda: True)
    received: list[ServerEvent] = []
    async for chunk in chunks:
        received += events_of(chunk)
        if len(received) == 2:
            break
    await chunks.aclose()
    assert sorted(e.data["job_id"] for e in received) == sorted(mine)
    assert all(e.kind == "status" and e.data["status"] == "queued" for e in received)
