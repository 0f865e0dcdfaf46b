"""One envelope for every list, and the cursors that page through it.

Every list of the API (jobs, datasets) answers ``{"items": […], "next_cursor":
…}``: a :class:`Page`. The domain returns a ``Page`` of rows and the route maps
it to a ``Page`` of public shapes (:meth:`Page.map`). A cursor is opaque to
clients (base64url of a small JSON object); tables page newest first by the
keyset ``(created_at, id)``, which stays stable while rows are inserted.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

from fitq.service import untrusted
from fitq.service.errors import InvalidInput

T = TypeVar("T")
U = TypeVar("U")

Keyset = tuple[datetime, str]
"""Where a newest-first page ended: its last row's ``(created_at, id)``."""


class Page(BaseModel, Generic[T]):
    """Every list: one page of items and the cursor of the next (null on the last page)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)  # a page of rows, before mapping

    items: list[T]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")

    def map(self, fn: Callable[[T], U]) -> Page[U]:
        """The same page with ``fn`` applied to each item."""
        return Page[U](items=[fn(item) for item in self.items], next_cursor=self.next_cursor)


CURSOR_PATTERN = r"^[A-Za-z0-9_-]*$"
"""What every cursor looks like (base64url, unpadded); the OpenAPI document states it
for each ``cursor`` parameter (``api/openapi.py``)."""
CURSOR_MAX_CHARS = 1024
"""Longer than any cursor the API makes (a keyset is a timestamp and an id)."""
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    """The JSON inside a cursor; ``InvalidInput`` (``query.cursor``) when it is not one.

    The JSON is read as any client text is (``untrusted.loads``): a cursor is
    opaque, but nothing stops a client from making one."""
    if len(cursor) > CURSOR_MAX_CHARS or not _CURSOR.match(cursor):
        raise bad_cursor()
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return untrusted.loads(base64.urlsafe_b64decode(padded.encode()), ["query", "cursor"])
    except (InvalidInput, binascii.Error, ValueError):
        raise bad_cursor() from None


def bad_cursor() -> InvalidInput:
    return InvalidInput("cursor is not one this API returned", loc=["query", "cursor"])


def keyset_of(row: Any) -> list[str]:
    """The JSON form of the keyset a page ends at (its last row)."""
    return [row.created_at.isoformat(), row.id]


def parse_keyset(value: Any) -> Keyset:
    """A keyset back from its JSON form (``bad_cursor`` when it is not one: the
    timestamp must say its time zone, as those the API writes do, and the id
    must be a string)."""
    try:
        created, last_id = value
        at = datetime.fromisoformat(created)
        if at.tzinfo is None or not isinstance(last_id, str):
            raise bad_cursor()
        return at.astimezone(UTC), last_id
    except (TypeError, ValueError, OverflowError):  # OverflowError: 0001-01-01 east of UTC
        raise bad_cursor() from None


def newest_first(
    session: Session, query: Select[Any], model: Any, after: Keyset | None, limit: int
) -> tuple[list[Any], bool]:
    """Up to ``limit`` rows of ``query`` (over ``model``, a mapped class with
    ``created_at`` and ``id``), newest first, after the keyset ``after``; and
    whether more rows follow."""
    if after is not None:
        created, last_id = after
        query = query.where(
            or_(model.created_at < created, and_(model.created_at == created, model.id < last_id))
        )
    ordered = query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)
    rows = list(session.scalars(ordered))
    return rows[:limit], len(rows) > limit
