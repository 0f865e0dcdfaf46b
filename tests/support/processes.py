"""fitq's real processes: their environment, a free port, one command run to
its end, a long-running process stopped on the way out, and its readiness."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.waits import wait_for

START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30
FITQ = [sys.executable, "-m", "fitq.service.cli"]
"""The ``fitq`` command of this interpreter."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fitq_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without its ``FITQ_*``, then ``FITQ_HOME``, a
    0.2 s poll and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FITQ_")}
    env.update({"FITQ_HOME": str(home), "FITQ_POLL_SECONDS": "0.2", **extra})
    return env


def run_fitq(
    args: Sequence[str], env: dict[str, str], **kw: object
) -> subprocess.CompletedProcess[str]:
    """``fitq <args>`` run to its end, its output captured."""
    return subprocess.run(
        [*FITQ, *args], env=env, capture_output=True, text=True, timeout=120, **kw
    )  # type: ignore[call-overload,no-any-return]


@contextmanager
def fitq_process(
    args: Sequence[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``fitq <args>`` writing to ``log``, stopped with SIGTERM (then SIGKILL) on the way out."""
    with log.open("ab") as out:
        proc = subprocess.Popen([*FITQ, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], grace_seconds: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM, and SIGKILL if it has not exited within ``grace_seconds``."""
    proc.terminate()
    try:
        proc.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``url/healthz`` answers 200; fail at once if the process exits."""

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"fitq exited with {proc.returncode}:\n{log.read_text()}")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(
        healthy,
        f"fitq to answer at {url}",
        timeout=START_TIMEOUT_SECONDS,
        poll=0.2,
        context=lambda: log.read_text(errors="replace"),
    )


def wait_for_line(log: Path, text: str) -> None:
    """Until ``log`` says ``text``."""
    wait_for(
        lambda: log.exists() and text in log.read_text(errors="replace"),
        f"{log.name} to say {text!r}",
        timeout=START_TIMEOUT_SECONDS,
        poll=0.1,
        context=lambda: log.read_text(errors="replace") if log.exists() else "",
    )
