"""The artifact store failing under a job: an outage of the store, not the job's fault.

A full disk (``ENOSPC``), an I/O error, a store that refuses or drops connections
(s3fs/botocore/aiohttp), a permission the deployment lost: any job would meet it,
so failing the job for it would drain the whole queue into ``failed``. Instead the
attempt hands its job back to the queue from its last committed checkpoint
(``queue.requeue``, with the error in the status event), and the worker pauses its
claims with an exponential backoff (:class:`Backoff`) so that it does not take the
next job and fail it too. After ``STORE_FAILURES_MAX`` hand-backs in a row (no epoch
recorded in between) the job fails, with the reason.

What is *not* an outage: a file that is not there (``FileNotFoundError``: a dataset
deleted, the job's own problem) and anything that is no ``OSError`` or client error.

Text stored on a job (its error, its events) never carries the store's location:
:func:`scrub` replaces the store's URL and root, any other URL and any absolute
path.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fitq.service.store import ArtifactStore

log = logging.getLogger("fitq.worker")

STORE_OUTCOME = "store unavailable"
"""An attempt's outcome when the store failed under it and the job went back."""
STORE_FAILURES_MAX = 10
"""Hand-backs for the store in a row (no epoch recorded between them) after which
the job fails: with one worker, an outage of about three minutes (``Backoff``)."""
STORE_BACKOFF_FIRST_SECONDS = 0.5
"""The worker's first pause of its claims after a store failure (then doubled)."""
STORE_BACKOFF_MAX_SECONDS = 60.0
"""The longest pause of a worker's claims while the store keeps failing."""

OUTAGE_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ENOSPC",
        "EDQUOT",
        "EIO",
        "EREMOTEIO",
        "EROFS",
        "EBUSY",
        "EAGAIN",
        "ESTALE",
        "EACCES",
        "EPERM",
        "ETIMEDOUT",
        "ECONNREFUSED",
        "ECONNRESET",
        "ECONNABORTED",
        "EHOSTUNREACH",
        "ENETUNREACH",
        "ENETDOWN",
        "EPIPE",
    )
    if hasattr(errno, name)
)
"""The errno values of a store that is full, broken, unreachable or refusing us."""
CLIENT_MODULES = ("botocore.", "aiobotocore.", "aiohttp.", "urllib3.", "s3fs.")
"""Where the exceptions of an object store's client live (connection errors, time-outs)."""


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) is the store's, not the job's."""
    for error in _chain(exc):
        if isinstance(error, FileNotFoundError | IsADirectoryError | NotADirectoryError):
            return False
        if isinstance(error, ConnectionError | TimeoutError | PermissionError):
            return True
        if isinstance(error, OSError) and error.errno in OUTAGE_ERRNOS:
            return True
        if type(error).__module__.startswith(CLIENT_MODULES) and not isinstance(
            error, ValueError | TypeError
        ):
            return True
    return False


def describe(exc: BaseException, store: ArtifactStore | None = None) -> str:
    """What a job's events and error say of the outage: the error's name, never a
    path or a URL (``"the artifact store failed: no space left on device (ENOSPC)"``)."""
    for error in _chain(exc):
        code = error.errno if isinstance(error, OSError) else None
        if code is not None and code in errno.errorcode:
            reason = f"{os.strerror(code).lower()} ({errno.errorcode[code]})"
            return f"the artifact store failed: {reason}"
    text = scrub(str(exc), store)
    return f"the artifact store failed: {type(exc).__name__}" + (f": {text}" if text else "")


PATH_CHARS = r"[^\s'\"<>,;()]"
"""What a path or URL may hold, as far as scrubbing goes (it ends at a quote, a space,
a comma, …)."""
URL = re.compile(rf"\b[A-Za-z][A-Za-z0-9+.-]*://{PATH_CHARS}*")
ABSOLUTE_PATH = re.compile(rf"(?<![\w./~>-])/{PATH_CHARS}+")


def scrub(text: str, store: ArtifactStore | None = None) -> str:
    """``text`` without the store's location, URLs and absolute paths (a server's
    layout is nobody else's business): each becomes ``<store>``, ``<url>``, ``<path>``."""
    if store is not None:
        places = {store.url, store.root, store.root.lstrip("/")}
        for where in sorted(places, key=len, reverse=True):
            if len(where) > 1:
                text = re.sub(re.escape(where) + PATH_CHARS + "*", "<store>", text)
    text = URL.sub("<url>", text)
    return ABSOLUTE_PATH.sub("<path>", text)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the errors it was raised from (a bounded walk)."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen and len(seen) < 16:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


class Backoff:
    """The worker's pause before its next claim: none while the store works; after
    an attempt that met a store outage, ``STORE_BACKOFF_FIRST_SECONDS`` doubling up
    to ``STORE_BACKOFF_MAX_SECONDS``; back to none after an attempt that did not."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def after(self, outcomes: Iterable[str]) -> float:
        """The pause that follows attempts that ended with ``outcomes``."""
        if STORE_OUTCOME in set(outcomes):
            self.seconds = min(
                max(2 * self.seconds, STORE_BACKOFF_FIRST_SECONDS), STORE_BACKOFF_MAX_SECONDS
            )
        else:
            self.seconds = 0.0
        return self.seconds
