"""Compatible jobs through the live service (`fitq api` and one `fitq worker`, SQLite
and PostgreSQL): submitted over HTTP one after the other, they train as one pack (the
later ones join the first at its next epoch boundary), the job resource says so
(``"pack": {"id", "size"}``) while they run, and each ends a whole job: its History,
its model to download and predict with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fitq.service.client import Client
from tests.support.faults import Faults
from tests.support.specs import digits_spec
from tests.support.stack import live_stack
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow

JOBS = 4
EPOCHS = 5


def spec(i: int) -> dict[str, Any]:
    """The digits net, each job its own seed and learning rate: one pack key."""
    return digits_spec(
        compile={"optimizer": {"name": "adam", "learning_rate": 0.001 * (i + 1)}},
        fit={"epochs": EPOCHS},
        seed=i,
        name=f"lr-{i}",
    )


def test_compatible_jobs_train_as_one_pack_each_a_whole_job(
    tmp_path: Path, database_url: str
) -> None:
    slow = Faults(step_delay_ms=2)  # ~0.4 s a round of 4: the pack is seen while it runs
    with (
        live_stack(tmp_path, database_url=database_url, faults=slow) as live,
        Client(live.url, live.key) as client,
    ):
        ids = [client.submit(spec(i))["id"] for i in range(JOBS)]

        def packed() -> list[dict[str, Any]] | None:
            jobs = [client.job(job_id) for job_id in ids]
            running = all(j["status"] == "running" and j["pack"] for j in jobs)
            return jobs if running and all(j["pack"]["size"] == JOBS for j in jobs) else None

        running = wait_for(packed, "the jobs to run as one pack", context=live.log_text)
        assert len({j["pack"]["id"] for j in running}) == 1
        finals = [client.wait(job_id, timeout=300) for job_id in ids]
        assert [j["status"] for j in finals] == ["succeeded"] * JOBS, [j["error"] for j in finals]
        assert {j["pack"]["id"] for j in finals} == {running[0]["pack"]["id"]}
        for job_id in ids:
            assert [e["epoch"] for e in client.epochs(job_id)] == list(range(1, EPOCHS + 1))
            assert client.download_model(job_id)
            predicted = client.predict(job_id, [[0.0] * 64, [8.0] * 64])
            assert len(predicted["predictions"]) == 2
