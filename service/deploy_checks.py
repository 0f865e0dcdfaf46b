"""Refuse to run with the placeholder secrets of ``.env.example``.

``.env.example`` ships every secret as ``change-me-…`` so that copying it is
not enough: a stack started from it unchanged would run with passwords anyone
can read in the repository. ``Settings`` calls :func:`refuse_placeholders`
when it is built, so ``fitq api``, ``fitq worker``, ``fitq db upgrade`` (the
compose ``migrate`` service) and the bucket set-up stop before they touch the
database or the store, naming every setting to change.

The refusal is a ``SystemExit`` (:class:`PlaceholderSecret`), not a
validation error: the process must not start, and its one line of output must
be the reason — a validation error would print a traceback and the other
settings' values, real secrets among them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from fitq.service.settings import Settings

PLACEHOLDER_PREFIX = "change-me"
"""How every secret in .env.example begins."""

S3_CREDENTIAL_VARIABLES = {
    # what the process reads: where a compose deployment sets it (.env)
    "AWS_ACCESS_KEY_ID": "FITQ_S3_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "FITQ_S3_SECRET_ACCESS_KEY",
}

S = TypeVar("S", bound="Settings")


class PlaceholderSecret(SystemExit):
    """A setting still holds a ``change-me…`` value from .env.example."""


def is_placeholder(value: str | None) -> bool:
    return bool(value) and value.strip().lower().startswith(PLACEHOLDER_PREFIX)  # type: ignore[union-attr]


def placeholders(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """Each setting that holds a placeholder, with the .env variable that fills it."""
    found = []
    if settings.database_url:
        password = urlsplit(settings.database_url).password
        if is_placeholder(unquote(password or "")):
            found.append("FITQ_DATABASE_URL: its password (POSTGRES_PASSWORD in .env)")
    if is_placeholder(settings.api_key):
        found.append("FITQ_API_KEY (FITQ_API_KEY in .env)")
    if settings.resolved_storage_url.startswith(("s3://", "s3a://")):
        for name, env_name in S3_CREDENTIAL_VARIABLES.items():
            if is_placeholder(environ.get(name)):
                found.append(f"{name} ({env_name} in .env)")
    return found


def refuse_placeholders(settings: S) -> S:
    """``settings`` unchanged, or :class:`PlaceholderSecret` naming each placeholder
    (the S3 credentials are read from this process's environment, as s3fs reads them)."""
    found = placeholders(settings, os.environ)
    if not found:
        return settings
    lines = "\n".join(f"  - {item}" for item in found)
    raise PlaceholderSecret(
        "fitq refuses to start: these settings still hold the placeholder "
        f"'{PLACEHOLDER_PREFIX}…' values of .env.example:\n{lines}\n"
        "Set each to a secret of your own (e.g. `openssl rand -hex 24`) in .env, "
        "then start again (docs/deployment.md, step 3)."
    )
