"""Packed training: K jobs as one computation against the same K jobs trained solo.

    .venv/bin/python -m bench.packing [--quick] [--device cpu|cuda] [--batch-size 32]

K = 1, 2, 4, 8, 16, 32, 64 jobs of the opening model (784 → 128 relu → 64 relu → 10
softmax, Adam, sparse categorical cross-entropy, accuracy tracked), each with its own
learning rate, seed and so its own initial weights and data order, all on one synthetic
dataset (uniform pixels, random labels; 8,192 rows by default). One epoch of every job,
timed, for each of:

  packed           one `fitq.worker.engine.pack.Pack` of the K jobs (`run_epoch`)
  pack per core    (CPU) the K jobs spread over one pack per core, each pack run by its
                   own thread with one torch thread: a worker's option on a CPU, where
                   one thread per core wastes no time on OpenMP's per-op handoffs
  one at a time    the K jobs one after another through the solo `Trainer.fit`
  K processes      K worker processes at once, each running one job through the solo
                   `Trainer.fit` (torch threads per process: max(1, threads // K));
                   they start, load their data and warm up before the clock starts

and prints total samples/s (K × rows ÷ wall time) with the packed method's ratio to
the others. The methods take turns within each round (one warm-up round first), so load
from other processes falls on all of them alike; the figure is the median over the
rounds. `--quick` stops at K = 16. The last line:
`packed vs one at a time, 16 jobs at batch 32 on DEVICE: X× (K=64: Y×)`.

A benchmark, never a test; it sets torch's thread count itself (--threads, default all
cores).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from fitq.service.spec import parse_spec
from fitq.worker.engine import Trainer
from fitq.worker.engine.pack import Pack
from tests.support.specs import spec_factory

FEATURES, HIDDEN1, HIDDEN2, CLASSES = 784, 128, 64, 10
JOBS = (1, 2, 4, 8, 16, 32, 64)
QUICK_JOBS = (1, 2, 4, 8, 16)
HEADLINE_JOBS = 16
DATA_SEED = 0


def job_spec(k: int, jobs: int, batch_size: int) -> dict[str, Any]:
    """Job k of `jobs`: the opening model, its own seed and learning rate (0.5e-3 … 1.5e-3),
    one epoch; normalized as the service stores it (the engine takes nothing else)."""
    spec = parse_spec(
        spec_factory(
            input_dim=FEATURES,
            hidden=(HIDDEN1, HIDDEN2),
            classes=CLASSES,
            compile={"optimizer": {"name": "adam", "learning_rate": 1e-3 * (0.5 + k / jobs)}},
            fit={"epochs": 1, "batch_size": batch_size, "shuffle": True},
            seed=k,
        )
    ).model_dump(mode="json")
    return {key: spec[key] for key in ("model", "compile", "fit", "seed")}


def synthetic(rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(DATA_SEED)
    x = rng.random((rows, FEATURES), dtype=np.float32)
    return x, rng.integers(0, CLASSES, rows).astype(np.int64)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# ------------------------------------------------------------------ the three methods
# Each takes (jobs, x, y, batch size, device, threads) and returns samples/s of one
# epoch of every job, its setup (building trainers, moving data) untimed.


def packed(jobs: int, x: np.ndarray, y: np.ndarray, batch: int, device: str, threads: int):
    pack = Pack(device)
    for k in range(jobs):
        pack.add(f"job-{k}", job_spec(k, jobs, batch), x, y, dataset_key="synthetic")
    _sync(device)
    start = time.perf_counter()
    results = pack.run_epoch()
    _sync(device)
    seconds = time.perf_counter() - start
    assert len(results) == jobs and all(r.done for r in results.values())
    return jobs * len(x) / seconds


def packed_per_core(jobs: int, x: np.ndarray, y: np.ndarray, batch: int, device: str, threads: int):
    """The K jobs in one pack per core, each pack driven by its own thread with one torch
    thread (torch ops release the GIL): what a worker on a multi-core CPU could run."""
    lanes = max(1, min(threads, jobs))
    packs = [Pack(device) for _ in range(lanes)]
    for k in range(jobs):
        packs[k % lanes].add(f"job-{k}", job_spec(k, jobs, batch), x, y, dataset_key="synthetic")
    before = torch.get_num_threads()
    go = threading.Barrier(lanes + 1)

    def lane(pack: Pack) -> None:
        torch.set_num_threads(1)  # per thread: OpenMP's thread count is a per-thread setting
        go.wait()
        pack.run_epoch()

    workers = [threading.Thread(target=lane, args=(p,)) for p in packs]
    for w in workers:
        w.start()
    go.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    _sync(device)
    seconds = time.perf_counter() - start
    torch.set_num_threads(before)
    return jobs * len(x) / seconds


def one_at_a_time(jobs: int, x: np.ndarray, y: np.ndarray, batch: int, device: str, threads: int):
    seconds = 0.0
    for k in range(jobs):
        trainer = Trainer(**job_spec(k, jobs, batch), device=device)
        seconds += sum(trainer.fit(x, y)["seconds"])  # the epoch, data setup excluded
    return jobs * len(x) / seconds


def processes(jobs: int, x: np.ndarray, y: np.ndarray, batch: int, device: str, threads: int):
    ctx = mp.get_context("forkserver")
    ready, done, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    per_process = max(1, threads // jobs)
    args = (jobs, len(x), batch, device, per_process, ready, done, go)
    children = [ctx.Process(target=_worker, args=(k, *args), daemon=True) for k in range(jobs)]
    for child in children:
        child.start()
    try:
        for _ in children:
            _get(ready, children)
        start = time.perf_counter()
        go.set()
        ends = [_get(done, children) for _ in children]
    finally:
        for child in children:
            child.join(timeout=60)
    return jobs * len(x) / (max(ends) - start)


def _get(q: Any, children: list) -> Any:
    """The next message, or an error as soon as a worker process has died."""
    while True:
        try:
            return q.get(timeout=1)
        except queue.Empty:
            dead = [c.exitcode for c in children if c.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a worker process exited with {dead[0]}") from None


def _worker(k, jobs, rows, batch, device, threads, ready, done, go) -> None:
    """One worker process: its job's data and trainer, a warm-up, then the epoch."""
    torch.set_num_threads(threads)
    x, y = synthetic(rows)
    warm = Trainer(**job_spec(k, jobs, batch), device=device)
    warm.fit(x[: 4 * batch], y[: 4 * batch])
    trainer = Trainer(**job_spec(k, jobs, batch), device=device)
    ready.put(k)
    go.wait()
    trainer.fit(x, y)
    _sync(device)
    done.put(time.perf_counter())  # CLOCK_MONOTONIC: comparable across processes


Method = Callable[..., float]
METHODS: dict[str, Method] = {
    "packed": packed,
    "pack per core": packed_per_core,
    "one at a time": one_at_a_time,
    "K processes": processes,
}


# ------------------------------------------------------------------ main


def measure(jobs_list, x, y, batch, device, threads, rounds) -> dict[tuple[int, str], float]:
    """Median samples/s per (K, method); one warm-up round (K = 1) first."""
    methods = {n: m for n, m in METHODS.items() if device == "cpu" or n != "pack per core"}
    for method in methods.values():
        method(1, x, y, batch, device, threads)
    rates: dict[tuple[int, str], list[float]] = {}
    for jobs in jobs_list:
        for _ in range(rounds):
            for name, method in methods.items():
                rate = method(jobs, x, y, batch, device, threads)
                rates.setdefault((jobs, name), []).append(rate)
                print(f"  K={jobs:<3} {name:14} {rate:>11,.0f} samples/s", flush=True)
    return {key: statistics.median(values) for key, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="K up to 16: under 2 minutes")
    parser.add_argument("--rows", type=int, default=8192, help="rows per job (default 8192)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    mp.get_context("forkserver").set_forkserver_preload(["torch", "fitq.worker.engine"])
    jobs_list = QUICK_JOBS if args.quick else JOBS
    rounds = args.rounds or 3
    x, y = synthetic(args.rows)
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {args.threads} threads"
    print(
        f"fitq packing benchmark: {name}; torch {torch.__version__}; batch {args.batch_size}; "
        f"{args.rows} rows × {FEATURES} per job, one epoch each; median of {rounds} round(s) "
        "after a warm-up"
    )
    rates = measure(jobs_list, x, y, args.batch_size, args.device, args.threads, rounds)

    header = (
        f"{'K':>3}  {'packed':>9}  {'pack per core':>13}  {'one at a time':>13}  "
        f"{'K processes':>11}  {'packed × one at a time':>22}  {'× processes':>11}"
    )
    print(f"\ntotal samples/s, batch {args.batch_size}, {args.device}")
    print(header)
    print("-" * len(header))
    for jobs in jobs_list:
        p, c, s, q = (rates.get((jobs, m), float("nan")) for m in METHODS)
        print(
            f"{jobs:>3}  {p:>9,.0f}  {c:>13,.0f}  {s:>13,.0f}  {q:>11,.0f}  "
            f"{p / s:>21.2f}×  {p / q:>10.2f}×"
        )
    if args.device == "cpu" and max(jobs_list) > args.threads:
        print(
            f"(K processes share {args.threads} cores: past K = {args.threads} each runs torch "
            "with one thread and they take turns on the cores)"
        )

    def ratio(jobs: int) -> float:
        return rates[(jobs, "packed")] / rates[(jobs, "one at a time")]

    tail = "K=64 skipped with --quick" if args.quick else f"K=64: {ratio(64):.2f}×"
    print(
        f"packed vs one at a time, {HEADLINE_JOBS} jobs at batch {args.batch_size} on "
        f"{args.device}: {ratio(HEADLINE_JOBS):.2f}× ({tail})"
    )


if __name__ == "__main__":
    main()
