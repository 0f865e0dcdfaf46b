"""Worker processes on one environment: started (``fitq worker``, or the
faulty worker when faults are given; forked from a warm zygote when one is
given), found by pid, their logs read, and all stopped at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tests.support.faults import Faults
from tests.support.processes import FITQ
from tests.support.waits import wait_for
from tests.support.zygote import Zygote

FAULTY_WORKER = [sys.executable, "-m", "tests.support.faulty_worker"]


class Process(Protocol):
    """What the tests do with a worker: a ``subprocess.Popen`` or a zygote's ``Child``."""

    pid: int

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, signum: int) -> None: ...
    def kill(self) -> None: ...
    def terminate(self) -> None: ...


def worker_pid(worker_id: str | None) -> int | None:
    """The process of a worker id (``<host>-<pid>-<random>``)."""
    if not worker_id:
        return None
    return int(worker_id.rsplit("-", 2)[1])


@dataclass
class Fleet:
    """Workers with ``env``, their logs in ``logs_dir``; ``faults`` for every
    worker started without faults of its own."""

    logs_dir: Path
    env: dict[str, str]
    zygote: Zygote | None = None
    faults: Faults = field(default_factory=Faults)
    procs: list[Process] = field(default_factory=list)
    logs: dict[int, Path] = field(default_factory=dict)

    def start(self, faults: Faults | None = None, **env: str) -> Process:
        """A new worker, with ``env`` over the fleet's."""
        log = self.logs_dir / f"worker-{len(self.procs)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.touch()  # a forked child creates it a moment later: wait_started reads it at once
        args = (faults or self.faults).args()
        full_env = {**self.env, **env}
        proc: Process
        if self.zygote is not None:
            proc = self.zygote.spawn(full_env, log, args)
        else:
            command = [*FAULTY_WORKER, *args] if args else [*FITQ, "worker"]
            with log.open("ab") as out:
                proc = subprocess.Popen(command, env=full_env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        self.logs[proc.pid] = log
        return proc

    def by_pid(self, pid: int | None) -> Process | None:
        return next((p for p in self.procs if p.pid == pid), None)

    def alive(self) -> list[Process]:
        return [p for p in self.procs if p.poll() is None]

    def log_of(self, proc: Process) -> str:
        return self.logs[proc.pid].read_text(errors="replace")

    def log_text(self) -> str:
        """Every worker's log, one after the other."""
        return "\n".join(self.log_of(p) for p in self.procs)

    def wait_started(self, proc: Process) -> None:
        """Until the worker logged that it started; fail if it exited first."""
        wait_for(
            lambda: "worker started" in self.log_of(proc) or proc.poll() is not None,
            "a worker to start",
        )
        assert proc.poll() is None, self.log_of(proc)

    def close(self, grace_seconds: float = 0.0) -> None:
        """Stop every worker: woken if paused, then SIGTERM and ``grace_seconds``
        to hand its job back before SIGKILL; with no grace, SIGKILL at once."""
        for proc in self.alive():
            with suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            if grace_seconds:
                proc.terminate()
            else:
                proc.kill()
        deadline = time.monotonic() + grace_seconds
        for proc in self.procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
