"""`fitq api` and two `fitq worker` processes sharing PostgreSQL: eight jobs,
all succeed, every epoch recorded exactly once. One job per claim
(``FITQ_PACK_MAX=1``): the jobs are compatible, and a pack would let one worker
take them all (tests/e2e/test_packs.py trains them so)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from fitq.service.client import Client
from fitq.service.db.engine import session_factory
from fitq.service.db.models import ExecutionLog, JobEpoch
from tests.support.specs import spec_factory
from tests.support.stack import live_stack

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

JOBS = 8
EPOCHS = 4


def spec(seed: int) -> dict[str, object]:
    return spec_factory(hidden=(32,), fit={"epochs": EPOCHS, "batch_size": 8}, seed=seed)


def test_two_workers_share_one_postgres_queue(tmp_path: Path, postgres_url: str) -> None:
    with (
        live_stack(tmp_path, database_url=postgres_url, workers=2, FITQ_PACK_MAX="1") as live,
        Client(live.url, live.key) as client,
    ):
        ids = [client.submit(spec(seed))["id"] for seed in range(JOBS)]
        finals = [client.wait(job_id, timeout=300) for job_id in ids]
    assert [job["status"] for job in finals] == ["succeeded"] * JOBS
    assert len({job["worker_id"] for job in finals}) == 2, "both workers should have trained"

    with session_factory(postgres_url)() as session:
        epochs = session.execute(
            select(JobEpoch.job_id, JobEpoch.epoch).where(JobEpoch.job_id.in_(ids))
        ).all()
        runs = session.execute(
            select(ExecutionLog.job_id, ExecutionLog.epoch).where(ExecutionLog.job_id.in_(ids))
        ).all()
    assert sorted(epochs) == sorted((j, e) for j in ids for e in range(1, EPOCHS + 1))
    assert max(Counter(runs).values()) == 1, "an epoch ran twice"
