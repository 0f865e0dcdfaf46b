"""Load: 64 concurrent clients on a mix of job reads and submissions against
`fitq api` (uvicorn) + PostgreSQL while 2 `fitq worker`s train.

Starts the API and 2 workers on a database (default: a fresh one on the local
PostgreSQL, dropped at the end) and a temporary file store, uploads a small
dataset, trains a few jobs on it and on ``iris``, then runs the clients
(asyncio + httpx, loopback) for ``--duration`` seconds or ``--max-requests``
requests, whichever comes first, on this mix:

- 70% ``GET /v1/jobs/{id}`` of a random known job,
- 20% ``GET /v1/jobs/{id}/metrics`` of a random trained job,
- 10% ``POST /v1/jobs`` of a one-epoch job (which the workers then train).

Prints a table per request kind (count, requests/s, p50, p99, errors) and every
error by status; exits 1 when there was any (a non-2xx answer or a transport
error). Nothing is asserted about speed.

    .venv/bin/python -m bench.load [--duration 30] [--clients 64] [--max-requests 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.stats import pct
from tests.databases import admin_url, fresh_postgres_database, libpq_dsn
from tests.support.specs import iris_spec
from tests.support.stack import Stack, live_stack

WORKERS = 2
PREPARED_JOBS = 8
PREPARE_TIMEOUT_SECONDS = 180
HTTP_TIMEOUT_SECONDS = 30
STATUS, METRICS, SUBMIT = "GET /v1/jobs/{id}", "GET /v1/jobs/{id}/metrics", "POST /v1/jobs"
MIX = ((STATUS, 70), (METRICS, 20), (SUBMIT, 10))


@dataclass
class Kind:
    """What one kind of request measured."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


def blobs_csv(rows: int = 300, seed: int = 0) -> bytes:
    """A small 3-class dataset: 4 features around one of three centres."""
    rng = random.Random(seed)
    centres = ((0.0, 0.0, 0.0, 0.0), (3.0, 3.0, 0.0, 1.0), (0.0, 3.0, 3.0, -1.0))
    out = io.StringIO()
    out.write("f0,f1,f2,f3,label\n")
    for i in range(rows):
        label = i % 3
        features = (c + rng.gauss(0, 1) for c in centres[label])
        out.write(",".join(f"{v:.4f}" for v in features) + f",{label}\n")
    return out.getvalue().encode()


def job_spec(dataset_id: str, seed: int, epochs: int) -> dict[str, Any]:
    spec = iris_spec(seed=seed, epochs=epochs, batch_size=32)
    spec["dataset_id"] = dataset_id
    return spec


def prepare(api: Stack) -> tuple[list[str], str]:
    """A dataset uploaded and a few jobs trained on it and on iris: the ids to read."""
    with httpx.Client(base_url=api.url, headers=api.headers, timeout=HTTP_TIMEOUT_SECONDS) as c:
        upload = c.post(
            "/v1/datasets",
            files={"file": ("blobs.csv", blobs_csv(), "text/csv")},
            data={"name": "blobs", "label": "label"},
        )
        upload.raise_for_status()
        dataset_id = upload.json()["id"]
        ids = []
        for i in range(PREPARED_JOBS):
            response = c.post("/v1/jobs", json=job_spec(("iris", dataset_id)[i % 2], i, 3))
            response.raise_for_status()
            ids.append(response.json()["id"])
        deadline = time.monotonic() + PREPARE_TIMEOUT_SECONDS
        for job_id in ids:
            while (status := c.get(f"/v1/jobs/{job_id}").json()["status"]) != "succeeded":
                if status in ("failed", "cancelled") or time.monotonic() > deadline:
                    raise SystemExit(f"prepared job {job_id} is {status}")
                time.sleep(0.2)
    return ids, dataset_id


async def load(
    api: Stack, trained: list[str], dataset_id: str, args: argparse.Namespace
) -> tuple[dict[str, Kind], float]:
    """The clients, until the time or the request budget is spent."""
    kinds = {name: Kind() for name, _ in MIX}
    known = list(trained)
    budget = args.max_requests
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(
        base_url=api.url, headers=api.headers, limits=limits, timeout=HTTP_TIMEOUT_SECONDS
    ) as client:

        async def one_client(n: int) -> None:
            nonlocal budget
            rng = random.Random(args.seed * 1000 + n)
            names = [name for name, _ in MIX]
            weights = [weight for _, weight in MIX]
            while time.perf_counter() < deadline and budget > 0:
                budget -= 1
                name = rng.choices(names, weights)[0]
                if name == STATUS:
                    request = client.get(f"/v1/jobs/{rng.choice(known)}")
                elif name == METRICS:
                    request = client.get(f"/v1/jobs/{rng.choice(trained)}/metrics")
                else:
                    spec = job_spec(rng.choice(("iris", dataset_id)), rng.randrange(1000), 1)
                    request = client.post("/v1/jobs", json=spec)
                start = time.perf_counter()
                try:
                    response = await request
                except httpx.TransportError as exc:
                    kinds[name].errors[type(exc).__name__] += 1
                    continue
                finally:
                    kinds[name].latencies.append(time.perf_counter() - start)
                if not response.is_success:
                    kinds[name].errors[f"HTTP {response.status_code}"] += 1
                elif name == SUBMIT:
                    known.append(response.json()["id"])

        started = time.perf_counter()
        deadline = started + args.duration
        await asyncio.gather(*(one_client(n) for n in range(args.clients)))
    return kinds, time.perf_counter() - started


def trained_during(database_url: str, seconds: float) -> int:
    """Jobs the workers finished in the last ``seconds`` (they train while the load runs)."""
    with psycopg.connect(libpq_dsn(database_url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM jobs WHERE status = 'succeeded'"
            " AND finished_at > now() - make_interval(secs => %s)",
            (seconds,),
        ).fetchone()
    return int(row[0]) if row else 0


def report(kinds: dict[str, Kind], seconds: float, args: argparse.Namespace, trained: int) -> int:
    """Print the table (rich, then Markdown for the docs); return the error count."""
    from rich.console import Console
    from rich.table import Table

    everything = Kind()
    for kind in kinds.values():
        everything.latencies += kind.latencies
        everything.errors.update(kind.errors)
    rows = []
    for name, kind in (*kinds.items(), ("all", everything)):
        rows.append(
            (
                name,
                f"{len(kind.latencies)}",
                f"{len(kind.latencies) / seconds:.0f}",
                f"{pct(kind.latencies, 50):.1f}",
                f"{pct(kind.latencies, 99):.1f}",
                f"{sum(kind.errors.values())}",
            )
        )
    title = (
        f"fitq load: {args.clients} clients, {seconds:.0f} s, "
        f"uvicorn ({args.processes} processes) + PostgreSQL, "
        f"{WORKERS} workers training, {os.cpu_count()} cores shared with the load generator"
    )
    header = ("request", "count", "requests/s", "p50 ms", "p99 ms", "errors")
    table = Table(title=title)
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    print(f"\n{title}; jobs trained during the run: {trained}\n")
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for name, kind in kinds.items():
        for what, count in kind.errors.most_common():
            print(f"error: {name}: {what} × {count}")
    return sum(everything.errors.values())


def run(workdir: Path, database_url: str, args: argparse.Namespace) -> int:
    with live_stack(
        workdir,
        database_url=database_url,
        storage_url=(workdir / "store").as_uri(),
        workers=WORKERS,
        FITQ_THREADS="1",
        FITQ_POLL_SECONDS="0.5",
        FITQ_API_PROCESSES=str(args.processes),
    ) as stack:
        trained, dataset_id = prepare(stack)
        kinds, seconds = asyncio.run(load(stack, trained, dataset_id, args))
        done = trained_during(database_url, seconds)
    return report(kinds, seconds, args, done)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=2, help="uvicorn processes of the API")
    parser.add_argument(
        "--database-url", help="PostgreSQL to use as is (default: a fresh database, dropped)"
    )
    parser.add_argument("--admin-url", default=admin_url())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fitq-load-") as tmp:
        if args.database_url:
            errors = run(Path(tmp), args.database_url, args)
        else:
            with fresh_postgres_database(args.admin_url, prefix="fitq_load") as url:
                errors = run(Path(tmp), url, args)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
