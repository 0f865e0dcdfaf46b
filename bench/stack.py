"""What the benchmarks share: a fresh PostgreSQL database, and `fitq api`
(uvicorn) serving it with a key, as separate processes on loopback.

Used by bench/api.py, bench/load.py and bench/soak.py (and through the soak,
tests/soak); a script puts the repository root on ``sys.path`` before
importing it. The processes themselves come from tests/e2e/processes.py.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fitq.service import auth
from fitq.service.db import migrate
from fitq.service.db.engine import engine_for
from tests.databases import fresh_postgres_database, libpq_dsn  # noqa: F401 (re-exported)
from tests.e2e.processes import (
    fitq_env,
    fitq_process,
    free_port,
    wait_healthy,
)

DEFAULT_ADMIN_URL = os.environ.get(
    "FITQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@contextmanager
def fresh_database(admin_url: str = DEFAULT_ADMIN_URL, prefix: str = "fitq_bench") -> Iterator[str]:
    """A new, empty PostgreSQL database next to ``admin_url``'s; dropped on the way out."""
    with fresh_postgres_database(admin_url, prefix) as url:
        yield url


@dataclass(frozen=True)
class Api:
    """A running ``fitq api``: where it listens, the key it accepts, its pid."""

    url: str
    key: str
    pid: int
    env: dict[str, str]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def stack_env(workdir: Path, database_url: str, **extra: str) -> dict[str, str]:
    """The environment every process of one benchmark shares: database, file store."""
    return fitq_env(
        workdir / "home",
        FITQ_DATABASE_URL=database_url,
        FITQ_STORAGE_URL=(workdir / "store").as_uri(),
        **extra,
    )


@contextmanager
def serve_api(workdir: Path, database_url: str, **extra_env: str) -> Iterator[Api]:
    """Migrate ``database_url``, then run ``fitq api`` on a free port with a new
    key (``FITQ_API_KEY``, registered by the API at start-up) until the block ends."""
    migrate.upgrade(database_url)
    engine_for(database_url).dispose()  # this process holds no connection while it measures
    port = free_port()
    key = auth.generate_key()
    env = stack_env(workdir, database_url, FITQ_API_KEY=key, **extra_env)
    log = workdir / "api.log"
    workdir.mkdir(parents=True, exist_ok=True)
    with fitq_process(["api", "--port", str(port)], env, log) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, log)
        yield Api(url=url, key=key, pid=proc.pid, env=env)


def pct(seconds: list[float], q: int) -> float:
    """The ``q``-th percentile of some latencies, in milliseconds."""
    if len(seconds) < 2:
        return float("nan")
    return statistics.quantiles(seconds, n=100)[q - 1] * 1000
