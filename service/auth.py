"""API keys: 256-bit random, ``fitq_`` prefix, shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from fitq.service.db.engine import rowcount
from fitq.service.db.models import ApiKey, utcnow
from fitq.service.errors import Conflict, NotFound, Unauthorized

KEY_PREFIX = "fitq_"
KEY_BYTES = 32


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def create_key(session: Session, name: str, key: str | None = None) -> str:
    """Register a key under ``name`` (a new random one unless given) and return it."""
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise Conflict(f"a key named {name!r} already exists")
    key = key or generate_key()
    session.add(ApiKey(name=name, key_hash=hash_key(key)))
    session.flush()
    return key


def ensure_key(session: Session, name: str, key: str) -> None:
    """Register ``key`` once (``FITQ_API_KEY`` at start-up); a no-op when known."""
    if session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(key))) is None:
        suffix = 0
        unique = name
        while session.scalar(select(ApiKey.id).where(ApiKey.name == unique)) is not None:
            suffix += 1
            unique = f"{name}-{suffix}"
        session.add(ApiKey(name=unique, key_hash=hash_key(key)))
        session.flush()


def revoke_key(session: Session, name: str) -> None:
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    if rowcount(result) == 0:
        raise NotFound(f"no active key named {name!r}")


def bearer_digest(authorization: str | None) -> str:
    """The SHA-256 of the key in an ``Authorization: Bearer …`` header (401 without one)."""
    if not authorization:
        raise Unauthorized()
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized()
    return hash_key(key)


def require_active(digest: str, stored_hash: str, revoked_at: datetime | None) -> None:
    """401 unless the key row found for ``digest`` is not revoked and matches
    (compared in constant time)."""
    if revoked_at is not None:
        raise Unauthorized()
    if not hmac.compare_digest(stored_hash, digest):
        raise Unauthorized()


@dataclass(frozen=True)
class Owner:
    """The key a request is made with: its id owns what the request creates."""

    id: str
    name: str


_KEY = select(ApiKey.id, ApiKey.name, ApiKey.key_hash, ApiKey.revoked_at)


def authenticate(db: Session | Connection, authorization: str | None) -> Owner:
    """The key owning a request, from its ``Authorization: Bearer …`` header
    (one statement, on a session or on a plain connection)."""
    digest = bearer_digest(authorization)
    found = db.execute(_KEY.where(ApiKey.key_hash == digest)).one_or_none()
    if found is None:
        raise Unauthorized()
    require_active(digest, found.key_hash, found.revoked_at)
    return Owner(found.id, found.name)
