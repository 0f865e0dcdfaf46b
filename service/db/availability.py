"""Telling a database that is away from a statement that is wrong.

A restart, a terminated backend, a network cut or SQLite's lock timeout all
surface as a DBAPI ``OperationalError`` or ``InterfaceError`` (or an error
SQLAlchemy recognised as a disconnect): those pass, and are retried by the
worker and answered 503 by the API. Any other database error is a bug (500).
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not serve (worth a retry), not
    that a statement was wrong."""
    if not isinstance(exc, DBAPIError):
        return False
    return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)


def describe(exc: BaseException) -> str:
    """The first line of the driver's message (one log field, no SQL)."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__
