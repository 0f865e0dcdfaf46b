"""API benchmark: status and metrics reads under concurrent clients, and how
fast an idle worker picks up a submitted job.

Starts `fitq api` (uvicorn, ``--processes`` of them) and one `fitq worker`
against a fresh PostgreSQL database, then prints a table. Loopback only;
bounded in time.

The load comes from wrk (Debian's ``wrk`` package: a C load generator that
costs the machine little) when it is installed, else from httpx clients in
this process (which cost about as much CPU as the API itself, on the same
cores: their figures are a floor). Besides requests/s and latency, the table
gives the API's own CPU time per request (all its processes, from /proc),
which depends far less on what else the machine is doing.

    .venv/bin/python -m bench.api [--clients 32] [--seconds 10] [--processes 2]
        [--load auto|wrk|httpx] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.stats import pct
from tests.databases import admin_url, fresh_postgres_database
from tests.support.specs import spec_factory
from tests.support.stack import live_stack

SPEC = spec_factory(hidden=(16,), fit={"epochs": 5})


@dataclass(frozen=True)
class Load:
    """What one route did under load."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int


async def httpx_load(
    url: str, key: str, path: str, clients: int, seconds: float, think_ms: float = 0.0
) -> Load:
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
                if think_ms:
                    await asyncio.sleep(think_ms / 1000 * (0.5 + random.random()))

        await asyncio.gather(*(one_client() for _ in range(clients)))
    return Load(len(latencies), seconds, pct(latencies, 50), pct(latencies, 99), errors)


WRK_THINK = (
    "local think = tonumber(os.getenv('FITQ_BENCH_THINK_MS'))\n"
    "function delay() return think * (0.5 + math.random()) end\n"
)
"""A wrk script: each connection waits about its think time before its next
request, jittered (uniform, ±50%) so the clients do not fall into step and
arrive in bursts, as real pollers do not."""


def wrk_load(
    url: str, key: str, path: str, clients: int, seconds: float, think_ms: float = 0.0
) -> Load:
    """wrk with one thread per core; its own latency percentiles."""
    threads = min(os.cpu_count() or 1, clients)
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_THINK)
        script.flush()
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{clients}", f"-d{seconds:.0f}s", "--latency"]
            + (["-s", script.name] if think_ms else [])
            + ["-H", f"Authorization: Bearer {key}", url + path],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
            env={**os.environ, "FITQ_BENCH_THINK_MS": f"{think_ms:.3f}"},
        ).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out)) + sum(
        int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out)
    )
    return Load(requests, seconds, _wrk_ms(out, "50%"), _wrk_ms(out, "99%"), errors)


def _wrk_ms(out: str, percentile: str) -> float:
    value, unit = re.search(rf"{percentile}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children (uvicorn's worker processes)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def run_load(
    args: argparse.Namespace, url: str, key: str, path: str, think_ms: float = 0.0
) -> Load:
    if args.load == "wrk":
        return wrk_load(url, key, path, args.clients, args.seconds, think_ms)
    return asyncio.run(httpx_load(url, key, path, args.clients, args.seconds, think_ms))


def paced_load(args: argparse.Namespace, url: str, key: str, path: str) -> Load:
    """The same clients, each waiting between requests so that together they
    offer about ``args.rate`` requests/s: latency at a given load rather than
    at saturation (where it is only the queue: clients / throughput). A first
    run with the whole period as think time measures a request's time; the
    second waits the period less that."""
    period_ms = args.clients / args.rate * 1000
    first = run_load(args, url, key, path, period_ms)
    latency_ms = args.clients / (first.requests / first.seconds) * 1000 - period_ms
    return run_load(args, url, key, path, max(period_ms - max(latency_ms, 0.0), 0.0))


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
        "--processes", type=int, default=os.cpu_count() or 1, help="uvicorn processes"
    )
    parser.add_argument("--load", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument(
        "--rate",
        type=float,
        default=1000.0,
        help="also measure each route with the clients paced to about this many requests/s "
        "(0: only flat out)",
    )
    parser.add_argument("--postgres", default=admin_url(), help="the admin URL of PostgreSQL")
    args = parser.parse_args()
    if args.load == "auto":
        args.load = "wrk" if shutil.which("wrk") else "httpx"

    with (
        fresh_postgres_database(args.postgres, prefix="fitq_bench") as db_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        run(Path(tmp), db_url, args)


def run(tmp: Path, db_url: str, args: argparse.Namespace) -> None:
    with live_stack(
        tmp,
        database_url=db_url,
        storage_url=(tmp / "store").as_uri(),
        FITQ_POLL_SECONDS="0.5",
        FITQ_API_PROCESSES=str(args.processes),
    ) as stack:
        url, key, env, api_pid = stack.url, stack.key, stack.env, stack.apis[0].pid
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
            cpu_before = tree_cpu_seconds(api_pid)
            load = run_load(args, url, key, path)
            cpu_ms = (tree_cpu_seconds(api_pid) - cpu_before) * 1000 / max(load.requests, 1)
            rows.append((label, "flat out", load, cpu_ms))
            if args.rate:
                paced = paced_load(args, url, key, path)
                rows.append((label, f"~{args.rate:.0f}/s", paced, float("nan")))

    print(
        f"\nfitq API, uvicorn ({args.processes} processes) + PostgreSQL, {args.clients} "
        f"concurrent clients ({args.load}), {args.seconds:.0f} s each, {os.cpu_count()} cores "
        "(load generator and database on the same machine)\n"
    )
    print(
        f"| {'route':<28} | {'offered':>8} | {'requests/s':>10} | {'p50 ms':>7} | {'p99 ms':>7} "
        f"| {'errors':>6} | {'API CPU ms/request':>18} |"
    )
    print(f"|{'-' * 30}|{'-' * 10}|{'-' * 12}|{'-' * 9}|{'-' * 9}|{'-' * 8}|{'-' * 20}|")
    for label, offered, load, cpu_ms in rows:
        cpu = "" if cpu_ms != cpu_ms else f"{cpu_ms:.2f}"  # NaN: not measured
        print(
            f"| {label:<28} | {offered:>8} | {load.requests / load.seconds:>10.0f} "
            f"| {load.p50_ms:>7.1f} | {load.p99_ms:>7.1f} | {load.errors:>6} | {cpu:>18} |"
        )
    print(
        f"\nsubmit → running with an idle worker (polling {env['FITQ_POLL_SECONDS']} s), "
        f"{len(waits)} jobs: median {statistics.median(waits) * 1000:.0f} ms, "
        f"max {max(waits) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
