"""The service figure for packing: a 64-trial grid sweep through the live service,
packed against one job at a time.

    .venv/bin/python -m bench.sweep_e2e [--epochs 10] [--rounds 3]

The opening model, 784 → 128 relu → 64 relu → 10 softmax, reads 784 pixels; `digits`
has 64, so the sweep trains 64 → 128 relu → 64 relu → 10 softmax on `digits` (1,797
rows, a tenth held out for val_loss, normalized, Adam, batch 32). The grid: 8 learning
rates × 8 seeds = 64 trials, submitted as one sweep (`POST /v1/sweeps`) to a live
fitq (tests/support/stack.py: one `fitq api`, one `fitq worker`, SQLite and a file
store, a fresh home per run), and timed from the POST until every trial has ended.

  packed        the worker's default (`FITQ_PACK_MAX` unset: 16 jobs a pack on a CPU)
  one at a time `FITQ_PACK_MAX=1`

The methods take turns, `--rounds` times, and each figure is the median of its rounds
(load from other processes then falls on both alike); each run is a new stack, so
neither inherits the other's warm caches. Prints a table (median wall time, trials per
minute, samples/s over all trials, the pack sizes the trials' rows show, the best
trial's val_loss) and one line:
`64-trial sweep on digits through the service, packed vs one at a time: X× (A s vs B s)`.

A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.specs import digits_spec
from tests.support.stack import live_stack

TRIALS_SIDE = 8
LEARNING_RATES = [round(1e-4 * 2**i, 6) for i in range(TRIALS_SIDE)]  # 1e-4 … 1.28e-2
SEEDS = list(range(TRIALS_SIDE))
TRAIN_ROWS = 1617  # digits' 1,797 rows less the tenth held out
POLL_SECONDS = 0.5
TIMEOUT_SECONDS = 3600
METHODS = {"packed": {}, "one at a time": {"FITQ_PACK_MAX": "1"}}


def sweep_body(epochs: int) -> dict[str, Any]:
    spec = digits_spec(hidden=(128, 64), fit={"epochs": epochs}, name=None)
    return {
        "name": "digits-lr-seed",
        "spec": spec,
        "method": "grid",
        "parameters": {
            "compile.optimizer.learning_rate": {"values": LEARNING_RATES},
            "seed": {"values": SEEDS},
        },
        "metric": {"name": "val_loss", "goal": "minimize"},
    }


def run_sweep(env: dict[str, str], epochs: int) -> dict[str, Any]:
    """One sweep on a fresh stack: wall seconds from the POST to the last trial's end."""
    with (
        tempfile.TemporaryDirectory(prefix="fitq-sweep-bench-") as workdir,
        live_stack(Path(workdir), **env) as live,
    ):
        http = live.http
        started = time.perf_counter()
        created = http.post("/v1/sweeps", json=sweep_body(epochs))
        created.raise_for_status()
        sweep_id = created.json()["id"]
        while True:
            sweep = http.get(f"/v1/sweeps/{sweep_id}").json()
            counts = sweep["trials"]
            if counts["queued"] == 0 and counts["running"] == 0:
                break
            if time.perf_counter() - started > TIMEOUT_SECONDS:
                raise TimeoutError(f"the sweep did not end: {counts}")
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - started
        packs = _pack_sizes(http, sweep_id)
    if counts["succeeded"] != counts["total"]:
        raise RuntimeError(f"not every trial succeeded: {counts}")
    best = sweep["best"]
    return {"seconds": seconds, "best": best["value"] if best else None, "packs": packs}


def _pack_sizes(http: httpx.Client, sweep_id: str) -> list[int]:
    """The pack size each trial's row shows at its end (1: alone)."""
    sizes = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"sweep_id": sweep_id, "limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = http.get("/v1/jobs", params=params).json()
        sizes += [job["pack"]["size"] if job.get("pack") else 1 for job in page["items"]]
        cursor = page.get("next_cursor")
        if not cursor:
            return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trials = len(LEARNING_RATES) * len(SEEDS)
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    for _ in range(args.rounds):
        for method, env in METHODS.items():  # taking turns
            results[method].append(run_sweep(env, args.epochs))
            r = results[method][-1]
            print(f"  {method}: {r['seconds']:.1f} s", flush=True)

    print(f"\n{trials} trials × {args.epochs} epochs of 64-128-64-10 on digits, one worker")
    print(
        f"{'method':<14} {'wall s':>8} {'trials/min':>11} {'samples/s':>10} "
        f"{'packs':>10} {'best val_loss':>14}"
    )
    wall: dict[str, float] = {}
    for method, runs in results.items():
        wall[method] = statistics.median(r["seconds"] for r in runs)
        samples = trials * args.epochs * TRAIN_ROWS / wall[method]
        sizes = sorted({s for r in runs for s in r["packs"]})
        best = runs[-1]["best"]
        print(
            f"{method:<14} {wall[method]:>8.1f} {trials * 60 / wall[method]:>11.1f} "
            f"{samples:>10,.0f} {','.join(map(str, sizes)):>10} {best:>14.4f}"
        )
    ratio = wall["one at a time"] / wall["packed"]
    print(
        f"{trials}-trial sweep on digits through the service, packed vs one at a time: "
        f"{ratio:.2f}× ({wall['packed']:.1f} s vs {wall['one at a time']:.1f} s)"
    )


if __name__ == "__main__":
    main()
