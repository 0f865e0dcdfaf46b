"""What `fitq store gc` reclaims in a small, real scenario, and what DELETE frees.

    .venv/bin/python -m bench.store_gc [--epochs 6]

In a fresh home (SQLite, a file store), through the API in process and a real
worker in process (`FITQ_PACK_MAX=1`), on `digits` with 64 → 512 relu → 256 relu
→ 10 softmax (Adam):

- job A trains to the end: the worker drops its checkpoints, its model stays;
- job B is killed at the start of its 4th epoch (the worker's process dies there:
  an exception out of the step hook), its lease runs out, and the next claim
  reaps it (`max_attempts` 1): failed, with the checkpoints it had;
- a crash mid-write leaves a 1 MiB `.tmp-*.part` in B's checkpoint folder;
- job C trains to the end and is deleted (`DELETE /v1/jobs/{id}`): its files go
  with it, not counted below;
- an upload (20,000 rows × 32 features) whose row went while its files stayed
  (a crash between the two; the row is deleted in SQL).

Then `gc --dry-run` and `gc --grace 0` over the store, printed as `fitq store
gc` prints them, with the store's size before and after. A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import delete, update

from fitq.service import auth
from fitq.service.api.app import create_app
from fitq.service.cli.store import human_bytes, print_report
from fitq.service.db import migrate
from fitq.service.db.engine import transaction
from fitq.service.db.models import Dataset, Job, utcnow
from fitq.service.settings import Settings
from fitq.service.store import ArtifactStore, gc
from tests.support.specs import dense, digits_spec


class Killed(BaseException):
    """The worker's process dying at a step boundary (not an error it handles)."""


def _stored(store: ArtifactStore) -> int:
    return sum(o.size for o in store.objects())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    from fitq.worker.runner import Worker

    with tempfile.TemporaryDirectory(prefix="fitq-gc-") as tmp:
        home = Path(tmp)
        settings = Settings(
            home=home, database_url=f"sqlite:///{home / 'fitq.db'}", api_key=None, pack_max=1
        )
        url = settings.resolved_database_url
        migrate.upgrade(url)
        with transaction(url) as session:
            key = auth.create_key(session, "bench")
        store = ArtifactStore.from_settings(settings)
        headers = {"Authorization": f"Bearer {key}"}
        spec = digits_spec(
            layers=[dense(512, "relu"), dense(256, "relu"), dense(10, "softmax")],
            fit={"epochs": args.epochs},
        )
        with TestClient(create_app(settings)) as api:

            def submit(**extra: Any) -> str:
                r = api.post("/v1/jobs", json={**spec, **extra}, headers=headers)
                assert r.status_code == 201, r.text
                return str(r.json()["id"])

            a = submit(name="A")
            b = submit(name="B", max_attempts=1)
            c = submit(name="C")

            def kill_b(claim: Any, epoch: int, step: int) -> None:
                if claim.job_id == b and epoch >= 3:
                    raise Killed

            Worker(settings, store=store).run(max_jobs=1)  # A
            with contextlib.suppress(Killed):
                Worker(settings, store=store, on_step=kill_b).run(max_jobs=1)  # B dies
            with transaction(url) as session:  # its lease runs out
                session.execute(
                    update(Job)
                    .where(Job.id == b)
                    .values(lease_expires_at=utcnow() - timedelta(seconds=1))
                )
            Worker(settings, store=store).run(max_jobs=1)  # reaps B, trains C
            store.put_bytes(f"jobs/{b}/checkpoints/.tmp-crashed.part", b"\0" * (1 << 20))
            statuses = {
                n: api.get(f"/v1/jobs/{j}", headers=headers).json()["status"]
                for n, j in (("A", a), ("B", b), ("C", c))
            }
            before_delete = _stored(store)
            assert api.delete(f"/v1/jobs/{c}", headers=headers).status_code == 204
            freed_by_delete = before_delete - _stored(store)

            rng = np.random.default_rng(0)
            x = rng.normal(size=(20_000, 32)).astype(np.float32)
            csv = io.StringIO()
            np.savetxt(csv, np.column_stack([x, rng.integers(0, 3, 20_000)]), delimiter=",")
            header = ",".join([*(f"f{i}" for i in range(32)), "y"]) + "\n"
            r = api.post(
                "/v1/datasets",
                files={"file": ("orphan.csv", header + csv.getvalue(), "text/csv")},
                headers=headers,
            )
            assert r.status_code == 201, r.text
            with transaction(url) as session:  # the row goes, the files stay: a crash
                session.execute(delete(Dataset).where(Dataset.id == r.json()["id"]))

        before = _stored(store)
        dry = gc.collect(url, store, grace_seconds=0, dry_run=True)
        report = gc.collect(url, store, grace_seconds=0)
        after = _stored(store)
        print(f"jobs: {statuses}; DELETE of C freed {human_bytes(freed_by_delete)}")
        print("--- fitq store gc --dry-run --grace 0")
        print_report(dry)
        print("--- fitq store gc --grace 0")
        print_report(report)
        print(
            f"store: {human_bytes(before)} before, {human_bytes(after)} after "
            f"({before - after:,} bytes reclaimed; the report says {report.bytes:,})"
        )


if __name__ == "__main__":
    main()
