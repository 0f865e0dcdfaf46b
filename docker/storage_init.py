"""The compose stack's one-shot bucket set-up: ``python /opt/storage_init.py``.

Creates the bucket of ``FITQ_STORAGE_URL`` (``s3://BUCKET/prefix``) on the
store at ``FITQ_S3_ENDPOINT_URL`` when it is missing, signed with the key the
API and the workers use (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``).
It reads fitq's own settings, so it refuses the placeholder secrets of
.env.example as ``fitq api`` does, and it reaches the store exactly as fitq
will. Running it again changes nothing.

The store may answer its health check a moment before it accepts requests, so
a failed attempt is retried every few seconds until ``--wait-seconds``.

Exit 0 when the bucket exists, 1 with a one-line reason on stderr otherwise.
Standard library plus fitq only (it runs in the API image).
"""

from __future__ import annotations

import argparse
import sys
import time

from fitq.service.settings import Settings
from fitq.service.store import ArtifactStore

WAIT_SECONDS = 60
RETRY_SECONDS = 2


def bucket_of(url: str) -> str:
    """``fitq`` for ``s3://fitq/artifacts``; refuses a store that is not S3."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("s3", "s3a") or not rest.split("/")[0]:
        raise ValueError(f"FITQ_STORAGE_URL must be s3://BUCKET/…, not {url!r}")
    return rest.split("/")[0]


def ensure_bucket(settings: Settings) -> bool:
    """Create the bucket if it is missing; True when it was created."""
    fs = ArtifactStore.from_settings(settings).fs
    try:
        fs.mkdir(bucket_of(settings.resolved_storage_url))
    except FileExistsError:  # BucketAlreadyOwnedByYou / BucketAlreadyExists
        return False
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait-seconds", type=float, default=WAIT_SECONDS)
    args = parser.parse_args(argv)
    settings = Settings()
    try:
        bucket = bucket_of(settings.resolved_storage_url)
    except ValueError as exc:
        print(f"storage-init: {exc}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.wait_seconds
    while True:
        try:
            created = ensure_bucket(settings)
        except Exception as exc:  # not reachable yet, or refused: retried, then said in one line
            if time.monotonic() < deadline:
                time.sleep(RETRY_SECONDS)
                continue
            reason = (str(exc).strip().splitlines() or [""])[0]
            print(f"storage-init: bucket {bucket}: {type(exc).__name__}: {reason}", file=sys.stderr)
            return 1
        print(f"storage-init: bucket {bucket} {'created' if created else 'already there'}")
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
