"""API benchmark: status and metrics reads under concurrent clients, and how
fast an idle worker picks up a submitted job.

Starts `fitq api` (uvicorn) and one `fitq worker` against a fresh PostgreSQL
database, then prints a table. Loopback only; bounded in time.

    .venv/bin/python bench/api.py [--clients 32] [--seconds 10] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.stack import fresh_database, pct, serve_api  # noqa: E402
from tests.e2e.processes import fitq_process, wait_for_line  # noqa: E402

SPEC = {
    "model": {
        "input_dim": 4,
        "layers": [
            {"type": "dense", "units": 16, "activation": "relu"},
            {"type": "dense", "units": 3, "activation": "softmax"},
        ],
    },
    "compile": {
        "optimizer": "adam",
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy"],
    },
    "fit": {"epochs": 5, "batch_size": 16},
    "dataset_id": "iris",
}


async def hammer(
    url: str, key: str, path: str, clients: int, seconds: float
) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=30
    ) as client:

        async def one_client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await client.get(path)
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors += 1

        await asyncio.gather(*(one_client() for _ in range(clients)))
    return len(latencies), latencies, errors


def submit_to_start(client: httpx.Client, rounds: int) -> list[float]:
    waits = []
    for _ in range(rounds):
        start = time.perf_counter()
        job = client.post("/v1/jobs", json=SPEC).json()
        while client.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued":
            time.sleep(0.005)
        waits.append(time.perf_counter() - start)
        while client.get(f"/v1/jobs/{job['id']}").json()["status"] == "running":
            time.sleep(0.05)
    return waits


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=10, help="submit-to-start samples")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "FITQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()

    with fresh_database(args.postgres) as db_url, tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), db_url, args)


def run(tmp: Path, db_url: str, args: argparse.Namespace) -> None:
    with (
        serve_api(tmp, db_url, FITQ_POLL_SECONDS="0.5") as api,
        fitq_process(["worker"], api.env, tmp / "worker.log"),
    ):
        url, key, env = api.url, api.key, api.env
        wait_for_line(tmp / "worker.log", "worker started")
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as client:
            waits = submit_to_start(client, args.rounds)
            job_id = client.post("/v1/jobs", json=SPEC).json()["id"]
            while client.get(f"/v1/jobs/{job_id}").json()["status"] != "succeeded":
                time.sleep(0.1)
        rows = []
        for label, path in (
            ("GET /v1/jobs/{id}", f"/v1/jobs/{job_id}"),
            ("GET /v1/jobs/{id}/metrics", f"/v1/jobs/{job_id}/metrics"),
        ):
            count, latencies, errors = asyncio.run(
                hammer(url, key, path, args.clients, args.seconds)
            )
            rows.append(
                (label, count / args.seconds, pct(latencies, 50), pct(latencies, 99), errors)
            )

    print(
        f"\nfitq API, uvicorn (1 process) + PostgreSQL, {args.clients} concurrent clients, "
        f"{args.seconds:.0f} s each, {os.cpu_count()} cores (load generator on the same machine)\n"
    )
    print(f"| {'route':<28} | {'requests/s':>10} | {'p50 ms':>7} | {'p99 ms':>7} | {'errors':>6} |")
    print(f"|{'-' * 30}|{'-' * 12}|{'-' * 9}|{'-' * 9}|{'-' * 8}|")
    for label, rps, p50, p99, errors in rows:
        print(f"| {label:<28} | {rps:>10.0f} | {p50:>7.1f} | {p99:>7.1f} | {errors:>6} |")
    print(
        f"\nsubmit → running with an idle worker (polling {env['FITQ_POLL_SECONDS']} s), "
        f"{len(waits)} jobs: median {statistics.median(waits) * 1000:.0f} ms, "
        f"max {max(waits) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
