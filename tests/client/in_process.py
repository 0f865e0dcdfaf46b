"""The API app served by uvicorn on a thread of the test process, on the test's
database: the Python client and the CLI talk real HTTP to it, without the cost
of starting processes (``tests/support/stack.py``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from tests.support.processes import free_port

START_SECONDS = 30.0


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` served on a free local port while the block runs; its URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(START_SECONDS)
