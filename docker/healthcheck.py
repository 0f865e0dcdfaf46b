"""The images' HEALTHCHECK: ``python /opt/healthcheck.py api|worker``.

- ``api``: ``GET /healthz`` on the local port (``FITQ_HEALTHCHECK_URL`` to
  override) answers 200.
- ``worker``: the worker has no port; it is healthy while it can reach its
  database and its artifact store, the two things it needs to make progress.

Exit 0 when healthy, 1 with a one-line reason on stderr otherwise. Standard
library plus fitq only, and nothing slow to import (no torch).
"""

from __future__ import annotations

import os
import sys
import urllib.request

API_URL = "http://127.0.0.1:8000/healthz"
TIMEOUT_SECONDS = 4


def check_api() -> None:
    url = os.environ.get("FITQ_HEALTHCHECK_URL", API_URL)
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")


def check_worker() -> None:
    from sqlalchemy import create_engine, text

    from fitq.service.db.engine import is_sqlite, normalize_url
    from fitq.service.settings import Settings
    from fitq.service.store import ArtifactStore

    settings = Settings()
    url = settings.resolved_database_url
    args = {} if is_sqlite(url) else {"connect_timeout": TIMEOUT_SECONDS}
    engine = create_engine(normalize_url(url), connect_args=args)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    ArtifactStore.from_settings(settings).exists("healthcheck")


def main(argv: list[str]) -> int:
    checks = {"api": check_api, "worker": check_worker}
    if len(argv) != 2 or argv[1] not in checks:
        print(f"usage: {argv[0]} api|worker", file=sys.stderr)
        return 2
    try:
        checks[argv[1]]()
    except Exception as exc:  # any failure is "unhealthy", said in one line
        reason = (str(exc).strip().splitlines() or [""])[0]
        print(f"unhealthy: {type(exc).__name__}: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
