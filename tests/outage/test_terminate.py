"""Every backend of the database terminated (``pg_terminate_backend``) again
and again for a few seconds mid-training, so that some die in the middle of a
worker's write or an API request: each process reconnects, the API answers
200 or 503 (never 500), and every job ends once, on its first attempt."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.outage.cluster import Cluster
from tests.outage.stack import (
    assert_ended_once,
    submit,
    utc_now,
    wait_heartbeats,
    wait_ready,
    wait_training,
)
from tests.support.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

STORM_SECONDS = 3.0
KILL_INTERVAL_SECONDS = 0.02
READS = ("/readyz", "/v1/jobs", "/v1/datasets")


def test_terminated_backends_cost_no_job_and_no_attempt(
    stack: Stack, outage_cluster: Cluster, database: str
) -> None:
    ids = submit(stack, 3, seed=30)
    running = wait_training(stack, ids, epochs=1, running=2)

    terminated, rounds, answers = 0, 0, Counter[int]()
    started = time.monotonic()
    while time.monotonic() - started < STORM_SECONDS:
        terminated += len(outage_cluster.terminate(database))
        rounds += 1
        path = (*READS, f"/v1/jobs/{ids[0]}")[rounds % (len(READS) + 1)]
        response = stack.http.get(path)
        answers[response.status_code] += 1
        assert response.status_code in (200, 503), f"{path}: {response.text}"
        time.sleep(KILL_INTERVAL_SECONDS)
    back = utc_now()
    assert terminated >= rounds, "the processes' connections were not terminated"

    api_seconds = wait_ready(stack)
    worker_seconds = wait_heartbeats(stack, running, since=back)
    figures = assert_ended_once(stack, ids)
    stack.assert_alive()
    print(
        f"\nterminate: {rounds} rounds, {terminated} backends terminated, answers {dict(answers)}, "
        f"API ready "
        f"{api_seconds:.2f} s and workers heartbeating {worker_seconds:.2f} s after, {figures}"
    )
