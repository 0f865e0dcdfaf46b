"""Worker processes forked from a warm parent, for the kill tests and the soak.

Starting a worker process costs seconds of CPU (torch, sklearn), and the kill
scenarios start dozens of workers. The zygote is one process that imports
those modules once and then forks a child per request; the child sets its
environment, points stdout/stderr at its log, and runs the worker's entry
point (``tests/support/faulty_worker.py``: ``fitq worker``'s own function,
with the faults its arguments name): its own signal handlers, settings,
database engines and threads, nothing shared with the zygote, which opens no
connection and runs no torch op before forking. A child is a real process to
kill (-9), stop or terminate. The SIGTERM scenario starts its worker as a
process of its own, so the entry point is proven end to end as well.

    python -m tests.support.zygote

Protocol (lines): the test writes ``{"env": {...}, "log": path, "args": [...]}``;
the zygote answers ``started <pid>``, and ``exit <pid> <code>`` when a child
ends (``code`` as ``Popen.returncode``: negative for a signal).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

PRELOAD = (
    "torch",
    "sklearn",
    "fitq.service.cli",
    "fitq.service.datasets.builtin",
    "fitq.worker.runner",
    "tests.support.faulty_worker",
)
START_TIMEOUT_SECONDS = 120
ROOT = Path(__file__).resolve().parents[2]
"""The repository: the zygote runs as ``python -m tests.support.zygote`` from there."""


def main() -> None:
    import importlib
    import select

    for name in PRELOAD:
        importlib.import_module(name)
    print("ready", flush=True)
    children: set[int] = set()
    while True:
        readable, _, _ = select.select([sys.stdin], [], [], 0.05)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            print(f"exit {pid} {os.waitstatus_to_exitcode(status)}", flush=True)
        if not readable:
            continue
        line = sys.stdin.readline()
        if not line:
            return
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request["env"], request["log"], request.get("args", []))
        children.add(pid)
        print(f"started {pid}", flush=True)


def _child(env: dict[str, str], log: str, args: list[str]) -> None:
    os.setpgrp()
    os.environ.clear()
    os.environ.update(env)
    from fitq.service.settings import get_settings

    get_settings.cache_clear()  # settings the zygote may have read are not this worker's
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    code = 0
    try:
        from tests.support import faulty_worker

        faulty_worker.main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


class Child:
    """A forked worker, with the part of ``subprocess.Popen`` the tests use."""

    def __init__(self, zygote: Zygote, pid: int):
        self.zygote = zygote
        self.pid = pid

    @property
    def returncode(self) -> int | None:
        return self.zygote.exits.get(self.pid)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = time.monotonic() + (timeout if timeout is not None else 3600)
        while self.returncode is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class Zygote:
    """The warm parent, started once per test session."""

    def __init__(self, root: Path = ROOT):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.zygote"],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.exits: dict[int, int] = {}
        self._started: queue.Queue[int | str] = queue.Queue()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        first = self._started.get(timeout=START_TIMEOUT_SECONDS)
        assert first == "ready", first

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            word, *rest = line.split()
            if word == "ready":
                self._started.put("ready")
            elif word == "started":
                self._started.put(int(rest[0]))
            elif word == "exit":
                self.exits[int(rest[0])] = int(rest[1])

    def spawn(self, env: dict[str, str], log: Path, args: list[str] | None = None) -> Child:
        """A worker with ``env``, writing to ``log``, given the faulty worker's ``args``."""
        assert self.proc.stdin is not None
        request = {"env": env, "log": str(log), "args": args or []}
        with self._lock:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            pid = self._started.get(timeout=START_TIMEOUT_SECONDS)
        assert isinstance(pid, int)
        return Child(self, pid)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


if __name__ == "__main__":
    main()
