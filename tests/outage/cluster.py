"""A PostgreSQL cluster of the outage tests' own, driven with Debian's
postgresql-common tools (``pg_createcluster``, ``pg_ctlcluster``).

The outage tests stop and restart PostgreSQL and terminate its backends;
doing that to the main cluster (port 5432) would break every other test
running against it, so they get a cluster nobody else uses. It is created on
first use (``--start-conf manual``: never started at boot), started for the
outage tests and stopped after them; a lock file keeps two test runs from
restarting it under each other.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

NAME = "fitq_outage"
PORT = 54329
CONFIG_ROOT = Path("/etc/postgresql")
TOOLS = ("pg_createcluster", "pg_ctlcluster", "pg_lsclusters", "pg_isready")
TOOL_TIMEOUT_SECONDS = 120
READY_TIMEOUT_SECONDS = 60
LOCK_TIMEOUT_SECONDS = 900
LOCK_FILE = Path(tempfile.gettempdir()) / "fitq-outage-cluster.lock"
CONNECT_TIMEOUT_SECONDS = 5


def missing_tool() -> str | None:
    """What this machine lacks to run the cluster (None: nothing)."""
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return tool
    if not CONFIG_ROOT.is_dir() or not installed_versions():
        return str(CONFIG_ROOT)
    return None


def installed_versions() -> list[str]:
    """PostgreSQL major versions with a config folder, oldest first."""
    names = [p.name for p in CONFIG_ROOT.iterdir() if p.is_dir()]
    return sorted((n for n in names if n.replace(".", "").isdigit()), key=float)


def _run(args: list[str]) -> str:
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {done.returncode}: {done.stderr}")
    return done.stdout


@contextmanager
def exclusive() -> Iterator[None]:
    """Hold the cluster for this test run (a bounded wait for another run's turn)."""
    with LOCK_FILE.open("a") as lock:
        deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{LOCK_FILE} held by another test run") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Cluster:
    """``version/name`` on ``port``, trust authentication for ``postgres``."""

    version: str
    name: str = NAME
    port: int = PORT

    @classmethod
    def ensure(cls) -> Cluster:
        """The outage cluster, created (not started) if this machine has none."""
        for listed in json.loads(_run(["pg_lsclusters", "--json"]) or "[]"):
            if listed["cluster"] == NAME:
                return cls(str(listed["version"]), NAME, int(listed["port"]))
        version = installed_versions()[-1]
        _run(
            [
                "pg_createcluster",
                "--start-conf",
                "manual",
                "--port",
                str(PORT),
                version,
                NAME,
                "--",
                "--auth=trust",
            ]
        )
        return cls(version)

    def _ctl(self, action: str) -> None:
        _run(["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action])

    def is_running(self) -> bool:
        for listed in json.loads(_run(["pg_lsclusters", "--json"]) or "[]"):
            if listed["cluster"] == self.name and str(listed["version"]) == self.version:
                return bool(listed["running"])
        return False

    def start(self) -> None:
        """Start the server (if it is down) and wait until it accepts connections."""
        if not self.is_running():
            self._ctl("start")
        self.wait_ready()

    def stop(self) -> None:
        """A fast shutdown: open transactions rolled back, clients disconnected."""
        if self.is_running():
            self._ctl("stop")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        probe = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        while subprocess.run(probe, timeout=TOOL_TIMEOUT_SECONDS, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL {self.version}/{self.name} is not ready")
            time.sleep(0.1)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, query: str, *params: Any, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement on a connection of its own (autocommit); its rows, if any."""
        with psycopg.connect(
            self.url(database), autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
        ) as conn:
            cursor = conn.execute(query, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def backends(self, database: str, *, listening: bool = False) -> list[int]:
        """Client backends connected to ``database`` (only those idle in ``LISTEN``)."""
        rows = self.sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
            " AND (NOT %s OR query ILIKE 'LISTEN%%')",
            database,
            listening,
        )
        return sorted(int(row[0]) for row in rows)

    def terminate(self, database: str, *, listening: bool = False) -> list[int]:
        """``pg_terminate_backend`` every client backend of ``database`` (or only
        the LISTEN ones); the pids it terminated."""
        # In the select list, not the WHERE clause: it then runs only on the rows
        # the filter kept (never on this session's own backend).
        rows = self.sql(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
            " AND (NOT %s OR query ILIKE 'LISTEN%%')",
            database,
            listening,
        )
        return sorted(int(row[0]) for row in rows if row[-1])
