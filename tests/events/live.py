"""A live fitq for the tests that drive it from outside (events, CLI, client,
browser): real processes on free ports, killed on the way out."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fitq.service import auth
from fitq.service.db import migrate
from fitq.service.db.engine import transaction
from tests.e2e.processes import fitq_env, fitq_process, free_port, wait_healthy

DIGITS_SPEC: dict[str, Any] = {
    "name": "digits-mlp",
    "model": {
        "input_dim": 64,
        "layers": [
            {"type": "dense", "units": 64, "activation": "relu"},
            {"type": "dense", "units": 10, "activation": "softmax"},
        ],
    },
    "compile": {
        "optimizer": "adam",
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy"],
    },
    "fit": {"epochs": 12, "batch_size": 32, "validation_split": 0.1, "normalize": True},
    "seed": 0,
    "dataset_id": "digits",
}
"""A small digits model on the built-in dataset (a few seconds on a CPU)."""


@dataclass(frozen=True)
class Live:
    url: str
    key: str
    home: Path
    env: dict[str, str]
    urls: tuple[str, ...] = ()
    """Every API of this fitq (``url`` first)."""


@contextmanager
def fitq_up(tmp: Path, *, extra_api: bool = False, **env_extra: str) -> Iterator[Live]:
    """``fitq up`` (API, worker, SQLite under ``tmp/home``), and with
    ``extra_api`` a second ``fitq api`` on the same home."""
    home = tmp / "home"
    env = fitq_env(home, FITQ_LEASE_SECONDS="10", **env_extra)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env["FITQ_API_URL"] = url
    with ExitStack() as stack:
        log = tmp / "fitq-up.log"
        proc = stack.enter_context(fitq_process(["up", "--port", str(port)], env, log))
        wait_healthy(url, proc, log)  # the worker may still be starting: jobs wait for it
        urls = [url]
        if extra_api:
            extra, extra_proc, extra_log = _api(stack, env, tmp / "api2.log")
            wait_healthy(extra, extra_proc, extra_log)
            urls.append(extra)
        key = (home / "api_key").read_text().strip()
        yield Live(url, key, home, {**env, "FITQ_API_KEY": key}, tuple(urls))


@contextmanager
def fitq_postgres(tmp: Path, database_url: str, *, apis: int = 1) -> Iterator[Live]:
    """``fitq api`` (``apis`` of them) and one ``fitq worker`` on PostgreSQL."""
    env = fitq_env(tmp / "home", FITQ_DATABASE_URL=database_url, FITQ_LEASE_SECONDS="10")
    migrate.upgrade(database_url)  # in process: two fewer interpreters to start
    with transaction(database_url) as session:
        key = auth.create_key(session, f"live-{uuid.uuid4().hex[:8]}")
    with ExitStack() as stack:
        stack.enter_context(fitq_process(["worker"], env, tmp / "worker.log"))
        started = [_api(stack, env, tmp / f"api{i}.log") for i in range(apis)]
        for url, proc, log in started:  # all started first: they boot side by side
            wait_healthy(url, proc, log)
        urls = [url for url, _, _ in started]
        env = {**env, "FITQ_API_URL": urls[0], "FITQ_API_KEY": key}
        yield Live(urls[0], key, tmp / "home", env, tuple(urls))


def _api(stack: ExitStack, env: dict[str, str], log: Path) -> tuple[str, Any, Path]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    return url, stack.enter_context(fitq_process(["api", "--port", str(port)], env, log)), log
