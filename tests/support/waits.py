"""Bounded waits: poll a condition until it holds, fail naming what never came.

No test asserts a time; every wait for another process or thread is one of
these, with a deadline generous enough for a loaded machine."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

WAIT_SECONDS = 60
"""The default deadline of a wait."""
POLL_SECONDS = 0.02
"""The default pause between two looks."""


def wait_for(
    predicate: Callable[[], T | None],
    what: str,
    *,
    timeout: float = WAIT_SECONDS,
    poll: float = POLL_SECONDS,
    context: Callable[[], str] | None = None,
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Past ``timeout`` seconds fail with "timed out waiting for ``what``" and the
    tail of ``context()`` (the processes' logs, say). An exception of
    ``retry_on`` counts as "not yet" (a database that is coming back)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except retry_on:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{context()[-6000:]}" if context is not None else ""
            raise AssertionError(f"timed out waiting for {what}{detail}")
        time.sleep(poll)
