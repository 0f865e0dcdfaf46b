"""A live fitq for the tests and benchmarks that drive it from outside: real
processes on free ports, over SQLite or PostgreSQL, stopped on the way out.

- :func:`live_stack`: the schema migrated and a key registered (in this
  process, which then lets go of its connections), ``apis`` ``fitq api`` and
  ``workers`` workers started side by side, each waited for (``/healthz``,
  "worker started");
- :func:`fitq_up`: ``fitq up`` itself (API, one worker, SQLite and a file
  store under the home), and optionally more ``fitq api`` on the same home.

Either yields a :class:`Stack`: where the APIs listen, the key, the
environment the processes share (with ``FITQ_API_URL`` and ``FITQ_API_KEY``
for the CLI), the workers (a :class:`~tests.support.fleet.Fleet`: start more,
kill one) and every process's log.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fitq.service import auth
from fitq.service.db import migrate
from fitq.service.db.engine import engine_for, transaction
from tests.support.faults import Faults
from tests.support.fleet import Fleet
from tests.support.processes import (
    STOP_TIMEOUT_SECONDS,
    fitq_env,
    fitq_process,
    free_port,
    wait_healthy,
)
from tests.support.zygote import Zygote

HTTP_TIMEOUT_SECONDS = 30
UP_LEASE_SECONDS = "10"
"""``fitq up``'s lease in the tests: a job of a stopped worker is rescued within a test."""


@dataclass(frozen=True)
class ApiProcess:
    """One ``fitq api`` (or ``fitq up``) process: where it listens, its log."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Stack:
    """A running fitq: its APIs (the first is ``url``), a key, the database,
    the environment its processes share, its workers."""

    home: Path
    database_url: str
    key: str
    env: dict[str, str]
    apis: list[ApiProcess]
    workers: Fleet
    _http: httpx.Client | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.apis[0].url

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(api.url for api in self.apis)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @property
    def http(self) -> httpx.Client:
        """A client of the first API with the key (closed with the stack)."""
        if self._http is None:
            self._http = httpx.Client(
                base_url=self.url, headers=self.headers, timeout=HTTP_TIMEOUT_SECONDS
            )
        return self._http

    def log_text(self) -> str:
        """Every process's log, the APIs' first."""
        apis = [api.log.read_text(errors="replace") for api in self.apis]
        return "\n".join([*apis, self.workers.log_text()])

    def assert_alive(self) -> None:
        """No process died (an outage, say, must not take one down)."""
        for api in self.apis:
            assert api.proc.poll() is None, f"{api.log.name} exited:\n{api.log.read_text()[-4000:]}"
        for proc in self.workers.procs:
            assert proc.poll() is None, f"a worker exited:\n{self.workers.log_of(proc)[-4000:]}"

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


@contextmanager
def live_stack(
    workdir: Path,
    *,
    database_url: str | None = None,
    storage_url: str | None = None,
    apis: int = 1,
    workers: int = 1,
    faults: Faults | None = None,
    zygote: Zygote | None = None,
    **env: str,
) -> Iterator[Stack]:
    """fitq on ``database_url`` (default: SQLite in the home, ``workdir/home``),
    with ``storage_url`` (default: the home's store) and ``env`` for every
    process; the workers with ``faults`` (``tests/support/faults.py``), forked
    from ``zygote`` when given. Logs go to ``workdir``."""
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    url = database_url or f"sqlite:///{home / 'fitq.db'}"
    settings_env = {"FITQ_DATABASE_URL": url}
    if storage_url is not None:
        settings_env["FITQ_STORAGE_URL"] = storage_url
    shared = fitq_env(home, **settings_env, **env)
    key = _prepare(url)
    fleet = Fleet(workdir, shared, zygote, faults or Faults())
    with ExitStack() as stack:
        stack.callback(fleet.close, STOP_TIMEOUT_SECONDS)
        started = [_start_api(stack, shared, workdir / f"api{i}.log") for i in range(apis)]
        procs = [fleet.start() for _ in range(workers)]
        for api in started:  # all started first: they boot side by side
            wait_healthy(api.url, api.proc, api.log)
        for proc in procs:
            fleet.wait_started(proc)
        cli_env = {**shared, "FITQ_API_URL": started[0].url, "FITQ_API_KEY": key}
        live = Stack(home, url, key, cli_env, started, fleet)
        stack.callback(live.close)
        yield live


@contextmanager
def fitq_up(workdir: Path, *, extra_apis: int = 0, **env: str) -> Iterator[Stack]:
    """``fitq up`` in ``workdir/home`` (its worker is its own child: the
    stack's fleet is empty), and ``extra_apis`` more ``fitq api`` on the same
    home. ``env`` over a lease of ``UP_LEASE_SECONDS``."""
    home = workdir / "home"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    shared = fitq_env(home, FITQ_LEASE_SECONDS=UP_LEASE_SECONDS, FITQ_API_URL=url, **env)
    with ExitStack() as stack:
        log = workdir / "fitq-up.log"
        proc = stack.enter_context(fitq_process(["up", "--port", str(port)], shared, log))
        wait_healthy(url, proc, log)  # the worker may still be starting: jobs wait for it
        started = [ApiProcess(url, proc, log)]
        for i in range(extra_apis):
            started.append(_start_api(stack, shared, workdir / f"api{i + 2}.log"))
            wait_healthy(started[-1].url, started[-1].proc, started[-1].log)
        key = (home / "api_key").read_text().strip()
        database_url = f"sqlite:///{home.resolve() / 'fitq.db'}"
        fleet = Fleet(workdir, shared)
        live = Stack(home, database_url, key, {**shared, "FITQ_API_KEY": key}, started, fleet)
        stack.callback(live.close)
        yield live


def _prepare(database_url: str) -> str:
    """Migrate, register a new key; this process keeps no connection open."""
    migrate.upgrade(database_url)
    key = auth.generate_key()
    with transaction(database_url) as session:
        auth.ensure_key(session, f"live-{uuid.uuid4().hex[:8]}", key)
    engine_for(database_url).dispose()
    return key


def _start_api(stack: ExitStack, env: dict[str, str], log: Path) -> ApiProcess:
    port = free_port()
    proc = stack.enter_context(fitq_process(["api", "--port", str(port)], env, log))
    return ApiProcess(f"http://127.0.0.1:{port}", proc, log)
