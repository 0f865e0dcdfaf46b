"""The idle workers' LISTEN connections terminated alone: a job submitted
right after is still picked up, and each worker opens a new LISTEN connection."""

from __future__ import annotations

import time

import pytest

from tests.outage.cluster import Cluster
from tests.outage.stack import WORKERS, assert_ended_once, submit, wait
from tests.support.rows import job_row
from tests.support.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_a_killed_listen_connection_is_reopened_and_jobs_still_run(
    stack: Stack, outage_cluster: Cluster, database: str
) -> None:
    def listeners() -> list[int]:
        pids = outage_cluster.backends(database, listening=True)
        return pids if len(pids) == WORKERS else []

    before = wait(stack, listeners, "every worker listening")
    killed = outage_cluster.terminate(database, listening=True)
    assert killed == before

    killed_at = time.monotonic()
    ids = submit(stack, 1, seed=40)
    wait(stack, lambda: job_row(stack.database_url, ids[0]).attempt == 1, "the job claimed")
    claimed_seconds = time.monotonic() - killed_at
    figures = assert_ended_once(stack, ids)

    def reopened() -> list[int]:
        pids = listeners()
        return pids if pids and not set(pids) & set(killed) else []

    wait(stack, reopened, "new LISTEN connections")
    assert stack.workers.log_text().count("listen connection lost") >= WORKERS
    stack.assert_alive()
    print(
        f"\nlisten: {len(killed)} LISTEN backends terminated, the next job claimed "
        f"{claimed_seconds:.2f} s after, {figures}"
    )
