"""The idle workers' LISTEN connections terminated alone: a job submitted
right after is still picked up, and each worker opens a new LISTEN connection."""

from __future__ import annotations

import time

import pytest

from tests.outage.cluster import Cluster
from tests.outage.stack import WAIT_SECONDS, WORKERS, Stack, assert_ended_once, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_a_killed_listen_connection_is_reopened_and_jobs_still_run(
    stack: Stack, outage_cluster: Cluster, database: str
) -> None:
    def listeners() -> list[int]:
        pids = outage_cluster.backends(database, listening=True)
        return pids if len(pids) == WORKERS else []

    before = wait_until(listeners, "every worker listening", WAIT_SECONDS)
    killed = outage_cluster.terminate(database, listening=True)
    assert killed == before

    killed_at = time.monotonic()
    ids = stack.submit(1, seed=40)
    wait_until(lambda: stack.jobs(ids)[ids[0]].attempt == 1, "the job claimed", WAIT_SECONDS)
    claimed_seconds = time.monotonic() - killed_at
    figures = assert_ended_once(stack, ids)

    def reopened() -> list[int]:
        pids = listeners()
        return pids if pids and not set(pids) & set(killed) else []

    wait_until(reopened, "new LISTEN connections", WAIT_SECONDS, stack.log_text)
    assert stack.log_text().count("listen connection lost") >= WORKERS
    stack.assert_alive()
    print(
        f"\nlisten: {len(killed)} LISTEN backends terminated, the next job claimed "
        f"{claimed_seconds:.2f} s after, {figures}"
    )
