"""Event streams share the API fairly: at most FITQ_MAX_STREAMS_PER_KEY open
per key and FITQ_MAX_STREAMS in all per process (past them a 429 with
Retry-After, a slot given back when a stream ends), polls that take no
SQLite write lock, and a revoked key's streams closed within seconds.

The streams are driven in process through the ASGI interface (httpx's
in-process transport waits for a response to end, and these never do): each
is a request whose connection stays open until the test leaves. The figures
(streams held, seconds from a revoke to the last of its streams closed) go to
``test-artifacts/streams.json`` and docs/reliability.md."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from fitq.service import auth
from fitq.service.api import sse
from fitq.service.db.engine import engine_for, transaction
from fitq.service.settings import Settings
from tests.conftest import Owner
from tests.support.artifacts import ARTIFACTS, update_json

pytestmark = pytest.mark.anyio

ARTIFACT = ARTIFACTS / "streams.json"
HANG_SECONDS = 30
"""Bound on any wait here: past it the test calls it a hang (no latency is asserted)."""


@dataclass
class Stream:
    """One request left open: what the app sent so far, and a way to hang up."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    started: anyio.Event = field(default_factory=anyio.Event)
    ended: anyio.Event = field(default_factory=anyio.Event)
    hang_up: anyio.Event = field(default_factory=anyio.Event)
    ended_at: float | None = None

    def json(self) -> Any:
        return json.loads(bytes(self.body))


class Streams:
    """Requests to ``app`` run in ``group``, each until it ends or is hung up."""

    def __init__(self, app: FastAPI, group: anyio.abc.TaskGroup):
        self.app, self.group = app, group

    async def open(self, path: str, headers: dict[str, str]) -> Stream:
        stream = Stream()
        self.group.start_soon(self._run, path, headers, stream)
        with anyio.fail_after(HANG_SECONDS):
            await stream.started.wait()
        return stream

    async def _run(self, path: str, headers: dict[str, str], stream: Stream) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "server": ("fitq.test", 80),
            "client": ("127.0.0.1", 1),
        }
        requested = False

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await stream.hang_up.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                stream.status = message["status"]
                stream.headers = {k.decode(): v.decode() for k, v in message["headers"]}
                stream.started.set()
            elif message["type"] == "http.response.body":
                stream.body += message.get("body", b"")

        try:
            await self.app(scope, receive, send)  # type: ignore[arg-type]
        finally:
            stream.ended_at = time.monotonic()
            stream.started.set()
            stream.ended.set()


@pytest.fixture
async def streams(
    app: FastAPI, client: httpx.AsyncClient
) -> AsyncIterator[Streams]:  # client: the app's lifespan runs around the test
    async with anyio.create_task_group() as group:
        yield Streams(app, group)
        group.cancel_scope.cancel()


async def ended(*opened: Stream) -> None:
    with anyio.fail_after(HANG_SECONDS):
        for stream in opened:
            await stream.ended.wait()


class TestCaps:
    PER_KEY, TOTAL = 3, 4

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(
            update={"max_streams_per_key": self.PER_KEY, "max_streams": self.TOTAL}
        )

    async def test_per_key_then_in_all_then_a_slot_comes_back(
        self,
        streams: Streams,
        owner: Owner,
        make_owner: Callable[..., Owner],
        job_factory: Callable[..., Any],
    ) -> None:
        job = job_factory()  # queued: its stream stays open
        mine = [await streams.open("/v1/events", owner.headers) for _ in range(self.PER_KEY - 1)]
        mine.append(await streams.open(f"/v1/jobs/{job.id}/events", owner.headers))
        assert [s.status for s in mine] == [200] * self.PER_KEY

        refused = await streams.open("/v1/events", owner.headers)
        await ended(refused)
        assert refused.status == 429
        assert int(refused.headers["retry-after"]) > 0
        assert "FITQ_MAX_STREAMS_PER_KEY" in refused.json()["detail"]

        other = make_owner()
        theirs = await streams.open("/v1/events", other.headers)
        assert theirs.status == 200
        full = await streams.open("/v1/events", other.headers)
        await ended(full)
        assert full.status == 429
        assert "FITQ_MAX_STREAMS)" in full.json()["detail"]

        mine[0].hang_up.set()  # the client leaves: its slot comes back
        await ended(mine[0])
        again = await streams.open("/v1/events", owner.headers)
        assert again.status == 200
        for stream in [*mine, theirs, again]:
            stream.hang_up.set()


class TestRevokedKey:
    async def test_every_stream_of_a_revoked_key_closes_within_seconds(
        self,
        streams: Streams,
        settings: Settings,
        database_url: str,
        make_owner: Callable[..., Owner],
    ) -> None:
        """Default caps, filled: as many keys as fit, each with its most streams
        (one over is refused); then every key but one is revoked."""
        per_key, total = settings.max_streams_per_key, settings.max_streams
        owners = [make_owner(f"k{i}") for i in range(total // per_key)]
        held = [
            [await streams.open("/v1/events", o.headers) for _ in range(per_key)] for o in owners
        ]
        assert {s.status for row in held for s in row} == {200}
        over = await streams.open("/v1/events", owners[0].headers)
        await ended(over)
        assert over.status == 429

        revoked_at = time.monotonic()
        with transaction(database_url) as session:
            for i in range(1, len(owners)):
                auth.revoke_key(session, f"k{i}")
        await ended(*(s for row in held[1:] for s in row))
        closed_after = [s.ended_at - revoked_at for row in held[1:] for s in row]  # type: ignore[operator]
        assert not any(s.ended.is_set() for s in held[0])  # the key not revoked keeps its own
        reconnect = await streams.open("/v1/events", owners[1].headers)
        await ended(reconnect)
        assert reconnect.status == 401  # what makes an EventSource stop

        record(
            {
                "database": make_url(database_url).get_backend_name(),
                "streams_held": sum(len(row) for row in held),
                "refused_over_the_cap": over.status,
                "revoked_streams": len(closed_after),
                "closed_after_revoke_seconds": {
                    "max": round(max(closed_after), 2),
                    "min": round(min(closed_after), 2),
                },
                "key_check_seconds": sse.KEY_CHECK_SECONDS,
            }
        )
        for stream in held[0]:
            stream.hang_up.set()


class TestPollsTakeNoWriteLock:
    """On SQLite a transaction begins IMMEDIATE (the write lock): a poll that
    opened one waited for every writer, and made every writer wait for it."""

    @pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
    async def test_a_poll_runs_while_a_writer_holds_the_lock(
        self, database_url: str, job_factory: Callable[..., Any], owner: Owner
    ) -> None:
        job = job_factory()
        engine = engine_for(database_url)
        writer = sqlite3.connect(make_url(database_url).database, timeout=0, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        try:
            with anyio.fail_after(HANG_SECONDS):  # before: 30 s of busy timeout, then an error
                tick = await anyio.to_thread.run_sync(sse.job_reader(engine, job.id), 0, set())
                await anyio.to_thread.run_sync(sse.owner_reader(engine, owner.id), 0, set())
                assert await anyio.to_thread.run_sync(sse.key_checker(engine, owner.id))
                await anyio.to_thread.run_sync(sse.latest_id, engine)
        finally:
            writer.rollback()
            writer.close()
        assert tick.progress is not None and tick.progress["status"] == "queued"


def record(figures: dict[str, Any]) -> None:
    """Add this run's figures to ``test-artifacts/streams.json`` (one entry per database)."""
    update_json(ARTIFACT, lambda data: data.update({figures["database"]: figures}))
    print(json.dumps(figures))
