"""The fault-injection tests' tools: real `fitq worker` processes to kill,
stop and restart; the database read back; the reference weights of an
uninterrupted run; and the figures each scenario reports.

Every wait is a poll on a condition with a deadline; no test asserts a time.
Latencies go to ``test-artifacts/reliability.json`` (one entry per scenario and
backend), which ``bench/reliability_report.py`` turns into the table of
docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from sqlalchemy import func, select

from fitq.service.db.engine import session_factory
from fitq.service.db.models import ExecutionLog, Job, JobEpoch
from fitq.service.spec import parse_spec
from fitq.service.store import ArtifactStore
from tests.e2e.processes import FITQ, fitq_env
from tests.reliability.zygote import Zygote
from tests.worker import helpers

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "test-artifacts" / "reliability.json"
LEASE_SECONDS = 2
"""Short, so a dead worker's job is rescued quickly; heartbeats every 2/3 s."""
DEADLINE_SECONDS = 120
POLL_SECONDS = 0.02


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE_SECONDS) -> Any:
    """Poll ``predicate`` until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(POLL_SECONDS)


# -- jobs -------------------------------------------------------------------------


def iris_spec(seed: int = 0, epochs: int = 20, batch_size: int = 2, **fit: Any) -> dict[str, Any]:
    """The worker tests' iris job, longer: ``batch_size`` 2 makes 75 steps an epoch."""
    return helpers.iris_spec(seed=seed, epochs=epochs, batch_size=batch_size, **fit)


def job(url: str, job_id: str) -> Job:
    with session_factory(url)() as session:
        row = session.get(Job, job_id)
        assert row is not None
        return row


def jobs(url: str, ids: list[str]) -> dict[str, Job]:
    with session_factory(url)() as session:
        return {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(ids)))}


def recorded_epochs(url: str, job_id: str) -> list[int]:
    """The History rows of a job, in order (a duplicate would show twice)."""
    with session_factory(url)() as session:
        return list(
            session.scalars(
                select(JobEpoch.epoch).where(JobEpoch.job_id == job_id).order_by(JobEpoch.epoch)
            )
        )


def executions(url: str, ids: list[str]) -> int:
    with session_factory(url)() as session:
        return int(session.scalar(select(func.count()).where(ExecutionLog.job_id.in_(ids))) or 0)


def worker_pid(worker_id: str | None) -> int | None:
    """``fitq worker``'s id is ``<host>-<pid>-<random>``."""
    if not worker_id:
        return None
    return int(worker_id.rsplit("-", 2)[1])


# -- weights ------------------------------------------------------------------------


def model_weights(store: ArtifactStore, row: Job) -> dict[str, torch.Tensor]:
    assert row.model_key is not None, f"job {row.id} has no model ({row.status}, {row.error})"
    return load_safetensors(store.get_bytes(row.model_key))


_references: dict[str, dict[str, torch.Tensor]] = {}


def reference_weights(spec: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights of an uninterrupted run of ``spec``, trained here with the
    engine on one thread (as the workers are, ``FITQ_THREADS=1``)."""
    normalized = parse_spec(spec).model_dump(mode="json")
    key = json.dumps(normalized, sort_keys=True)
    if key not in _references:
        from fitq.worker import data
        from fitq.worker.engine import Trainer

        x, y = data.load_arrays(None, None, normalized["dataset_id"])  # type: ignore[arg-type]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            trainer = Trainer(
                model=normalized["model"],
                compile=normalized["compile"],
                fit=normalized["fit"],
                seed=normalized["seed"],
                device="cpu",
            )
            trainer.fit(x, y)
            _references[key] = load_safetensors(trainer.export_safetensors())
        finally:
            torch.set_num_threads(threads)
    return _references[key]


def assert_bit_identical(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for name in got:
        assert torch.equal(got[name], want[name]), f"{name} differs from the uninterrupted run"


# -- worker processes ---------------------------------------------------------------


@dataclass
class Fleet:
    """Real ``fitq worker`` processes on one database and store."""

    home: Path
    database_url: str
    storage_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    zygote: Zygote | None = None
    """Fork workers from this warm parent; None: ``python -m fitq.service.cli worker``."""
    procs: list[Any] = field(default_factory=list)
    logs: dict[int, Path] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        return fitq_env(
            self.home,
            FITQ_DATABASE_URL=self.database_url,
            FITQ_STORAGE_URL=self.storage_url,
            FITQ_LEASE_SECONDS=str(LEASE_SECONDS),
            FITQ_POLL_SECONDS="0.2",
            FITQ_THREADS="1",
            **{**self.extra_env, **extra},
        )

    def start(self, **extra_env: str) -> Any:
        """A new ``fitq worker`` (a ``Popen``, or a zygote's ``Child``)."""
        log = self.home / f"worker-{len(self.procs)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.touch()  # a forked child creates it a moment later: wait_started reads it at once
        if self.zygote is not None:
            child = self.zygote.spawn(self.env(**extra_env), log)
            self.procs.append(child)
            self.logs[child.pid] = log
            return child
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [*FITQ, "worker"], env=self.env(**extra_env), stdout=out, stderr=subprocess.STDOUT
            )
        self.procs.append(proc)
        self.logs[proc.pid] = log
        return proc

    def by_pid(self, pid: int | None) -> Any:
        return next((p for p in self.procs if p.pid == pid), None)

    def alive(self) -> list[Any]:
        return [p for p in self.procs if p.poll() is None]

    def log_of(self, proc: Any) -> str:
        return self.logs[proc.pid].read_text(errors="replace")

    def wait_started(self, proc: Any) -> None:
        wait_until(
            lambda: "worker started" in self.log_of(proc) or proc.poll() is not None,
            "a worker to start",
        )
        assert proc.poll() is None, self.log_of(proc)

    def close(self) -> None:
        for proc in self.alive():
            with suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        for proc in self.procs:
            proc.wait()


@contextmanager
def fleet(
    home: Path, database_url: str, storage_url: str, zygote: Zygote | None, **extra_env: str
) -> Iterator[Fleet]:
    workers = Fleet(home, database_url, storage_url, extra_env, zygote)
    try:
        yield workers
    finally:
        workers.close()


# -- figures ------------------------------------------------------------------------


def summary(seconds: list[float]) -> dict[str, float | None]:
    """p50 and max of some latencies, in milliseconds."""
    if not seconds:
        return {"p50_ms": None, "max_ms": None, "n": 0}
    return {
        "p50_ms": round(statistics.median(seconds) * 1000, 1),
        "max_ms": round(max(seconds) * 1000, 1),
        "n": len(seconds),
    }


def record(scenario: str, backend: str, **figures: Any) -> None:
    """Keep ``figures`` for ``scenario`` on ``backend`` in the JSON artifact."""
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(ARTIFACT.read_text()) if ARTIFACT.exists() else {}
    data.setdefault(scenario, {})[backend] = {"at": time.strftime("%Y-%m-%d %H:%M"), **figures}
    ARTIFACT.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
