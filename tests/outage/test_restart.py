"""PostgreSQL stopped mid-training and started again: while it is down the API
answers 503 (with Retry-After) wherever it needs the database and never 500;
once it is back the API serves and the workers go on, without a restart, and
every job ends once, on its first attempt."""

from __future__ import annotations

import time

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

DOWN_SECONDS = 3.0
"""How long the server stays down (after its fast shutdown returned)."""
NEEDS_DATABASE = 503
ANSWERS_WITHOUT_DATABASE = 200


def probe(stack: Stack, job_id: str) -> tuple[int, set[str]]:
    """Hit every read route (and a submission) once: how many requests, and
    what was wrong with their answers."""
    expected = {
        ("GET", "/healthz"): ANSWERS_WITHOUT_DATABASE,
        ("GET", "/metrics"): ANSWERS_WITHOUT_DATABASE,
        ("GET", "/readyz"): NEEDS_DATABASE,
        ("GET", "/v1/jobs"): NEEDS_DATABASE,
        ("GET", f"/v1/jobs/{job_id}"): NEEDS_DATABASE,
        ("GET", f"/v1/jobs/{job_id}/metrics"): NEEDS_DATABASE,
        ("GET", f"/v1/jobs/{job_id}/events"): NEEDS_DATABASE,
        ("GET", "/v1/datasets"): NEEDS_DATABASE,
        ("GET", "/v1/datasets/iris"): NEEDS_DATABASE,
        ("POST", "/v1/jobs"): NEEDS_DATABASE,
    }
    problems = set()
    for (method, path), status in expected.items():
        response = stack.http.request(method, path, json={} if method == "POST" else None)
        if response.status_code != status:
            problems.add(f"{method} {path}: {response.status_code} {response.text[:200]}")
        elif status == NEEDS_DATABASE:
            if "database" not in response.json()["detail"]:
                problems.add(f"{method} {path}: {response.text[:200]}")
            if not response.headers.get("retry-after", "").isdigit():
                problems.add(f"{method} {path}: no Retry-After")
    return len(expected), problems


def test_a_restart_mid_training_costs_no_job_and_no_attempt(
    stack: Stack, outage_cluster: Cluster
) -> None:
    ids = submit(stack, 3, seed=10)
    running = wait_training(stack, ids, epochs=1, running=2)

    down_at = time.monotonic()
    outage_cluster.stop()
    requests, problems = 0, set[str]()
    while time.monotonic() - down_at < DOWN_SECONDS:
        made, wrong = probe(stack, ids[0])
        requests, problems = requests + made, problems | wrong
    outage_cluster.start()
    back, outage_seconds = utc_now(), time.monotonic() - down_at
    if problems:
        print("\n".join(["", "wrong answers while down:", *sorted(problems)]))

    api_seconds = wait_ready(stack)
    worker_seconds = wait_heartbeats(stack, running, since=back)
    ids += submit(stack, 1, seed=20)  # the API writes again too
    figures = assert_ended_once(stack, ids)
    stack.assert_alive()
    assert not problems, "wrong answers while the database was down (printed above)"
    print(
        f"\nrestart: outage {outage_seconds:.1f} s, {requests} requests while down (no 500), "
        f"API ready {api_seconds:.2f} s and workers heartbeating {worker_seconds:.2f} s "
        f"after the start returned, {figures}"
    )
