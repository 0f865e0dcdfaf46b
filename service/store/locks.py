"""A lock on one store prefix, held by a database transaction until it ends.

Files and rows cannot change together: a dataset's canonical arrays are
shared by every upload of the same bytes (``keys.dataset``), an upload that
finds them stored records its row without writing them, and the collector
(``store/gc.py``) and a dataset delete remove a prefix that no row names.
Two rules, each under :func:`hold` on the prefix, make them safe together:

- a dataset row is written only by a transaction that holds the prefix and
  saw its files complete (``meta.json``) while holding it;
- a prefix's files are removed only by a transaction that holds the prefix
  and saw no row naming it while holding it.

The lock lasts until commit or rollback, so whichever comes second sees what
the first did: the collector sees the new row, or the upload sees the files
gone and writes them again.

PostgreSQL: a transaction-scoped advisory lock on a 64-bit digest of the
prefix. SQLite: every fitq transaction begins ``IMMEDIATE`` and so already
holds the database's one write lock; starting it is enough.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

NAMESPACE = "fitq-store:"
"""Keeps these advisory lock numbers apart from any other use of them."""


def lock_number(prefix: str) -> int:
    """The signed 64-bit advisory lock number of ``prefix``."""
    digest = hashlib.sha256(f"{NAMESPACE}{prefix}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def hold(session: Session, prefix: str) -> None:
    """Hold ``prefix`` until ``session``'s transaction ends (waits for a holder)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(lock_number(prefix))))
    else:
        session.execute(text("SELECT 1"))  # begins the transaction: BEGIN IMMEDIATE
