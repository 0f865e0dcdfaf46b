"""Packed training: K jobs as one computation against the same K jobs trained solo.

    .venv/bin/python -m bench.packing [--quick] [--device cpu|cuda] [--batch-size 32]

K = 1, 2, 4, 8, 16, 32, 64 jobs of the opening model (784 → 128 relu → 64 relu → 10
softmax, Adam, sparse categorical cross-entropy, accuracy tracked), each with its own
learning rate, seed and so its own initial weights and data order, all on one synthetic
dataset (uniform pixels, random labels; 8,192 rows by default). One epoch of every job,
timed, for each of:

  packed           one `fitq.worker.engine.pack.Pack` of the K jobs (`run_epoch`), its
                   optimizer update fused into one pass where the pack does so by
                   default (pack/fused.py: on the CPU with a C++ compiler)
  packed eager     the same with `fused_update=False`: the eager rule, as where no
                   compiler is installed
  pack per core    (CPU) the K jobs spread over one pack per core, each pack run by its
                   own thread with one torch thread: a worker's option on a CPU, where
                   one thread per core wastes no time on OpenMP's per-op handoffs
  one at a time    the K jobs one after another through the solo `Trainer.fit`
  K processes      K worker processes at once, each running one job through the solo
                   `Trainer.fit` (torch threads per process: max(1, threads // K));
                   they start, load their data and warm up before the clock starts

and prints total samples/s (K × rows ÷ wall time) with the packed method's ratio to
the others. The methods take turns within each round (warm-up rounds first), so load
from other processes falls on all of them alike; the figures are the median over the
rounds, then the best round of each (on a shared machine, the least disturbed one).
`--quick` stops at K = 16. The last line: `packed vs one at a time, 16 jobs at batch 32
on DEVICE: X× (K=64: Y×; best rounds: Z×)`.

`--profile` instead times the parts of one packed step at K = `--jobs` (default 16):
the gather, forward, loss, metric, backward and update, eager and fused, median µs;
then the whole `Round.step` (the parts plus the step's bookkeeping in Python).

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


def packed(
    jobs: int,
    x: np.ndarray,
    y: np.ndarray,
    batch: int,
    device: str,
    threads: int,
    fused_update: bool | None = None,
):
    pack = Pack(device, fused_update=fused_update)
    for k in range(jobs):
        pack.add(f"job-{k}", job_spec(k, jobs, batch), x, y, dataset_key="synthetic")
    _sync(device)
    start = time.perf_counter()
    results = pack.run_epoch()
    _sync(device)
    seconds = time.perf_counter() - start
    assert len(results) == jobs and all(r.done for r in results.values())
    return jobs * len(x) / seconds


def packed_eager(jobs: int, x: np.ndarray, y: np.ndarray, batch: int, device: str, threads: int):
    return packed(jobs, x, y, batch, device, threads, fused_update=False)


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
    "packed eager": packed_eager,
    "pack per core": packed_per_core,
    "one at a time": one_at_a_time,
    "K processes": processes,
}


# ------------------------------------------------------------------ the step's parts


def profile(jobs: int, x: np.ndarray, y: np.ndarray, batch: int, steps: int) -> None:
    """Median µs of each part of a packed step (CPU: every op is synchronous), the
    update eager and fused; then a solo step, for scale. Reads the pack's internals:
    the parts as `rounds.compute` runs them."""
    from fitq.worker.engine.pack.network import Context
    from fitq.worker.engine.pack.objectives import masked_sum
    from fitq.worker.engine.pack.rounds import Round

    for fused_update in (False, None):
        pack = Pack("cpu", fused_update=fused_update)
        for k in range(jobs):
            pack.add(f"job-{k}", job_spec(k, jobs, batch), x, y, dataset_key="synthetic")
        pack._seat()
        seating = pack._seating
        assert seating is not None
        for m in seating.members:
            m.perm = torch.randperm(m.n_train, generator=m.shuffle_gen)
            m.epoch_stats = pack._like.new_zeros(m.steps, 2)
        rnd = Round(seating, pack._store, pack.loss, pack.metrics)
        plan, net, b_ = rnd.plan, seating.net, seating.width
        times: dict[str, list[float]] = {}
        with torch.no_grad():
            for s in range(min(plan.steps, steps)):
                lap = _Laps(times)
                xb2, yb2 = seating.batch(rnd.x, rnd.y)
                torch.index_select(rnd.x, 0, plan.idx[s], out=xb2)
                torch.index_select(rnd.y, 0, plan.idx[s], out=yb2)
                lap("gather")
                xb, yb = xb2.view(jobs, b_, -1), yb2.view(jobs, b_, -1)
                out = net.forward(xb, Context(True, plan.draws[s], seating.generators))
                lap("forward")
                rows, dout = pack.loss.rows_and_grad(out, yb, plan.w[s])
                lap("loss + ∂loss")
                masked_sum(rows, plan.valid[s], rnd.stats[s, 0])
                masked_sum(pack.metrics[0].rows(out, yb), plan.valid[s], rnd.stats[s, 1])
                lap("sums (loss, metric)")
                net.backward(dout)
                lap("backward")
                seating.update(
                    {**seating.coefs, **{n: t[s] for n, t in rnd.step_coefs.items()}}, None
                )
                lap("update")
        whole = Round(seating, pack._store, pack.loss, pack.metrics)
        with torch.no_grad():  # the step as a round runs it, its bookkeeping included
            for s in range(min(plan.steps, steps)):
                lap = _Laps(times)
                whole.step(s)
                lap("Round.step, whole")
        how = "fused" if seating.opt.fused else "eager"
        print(f"packed step, K = {jobs}, batch {batch}, update {how}: median µs")
        total = 0.0
        for name, values in times.items():
            us = statistics.median(values[10:]) * 1e6  # past the first steps (and a compile)
            if name.startswith("Round.step"):
                print(f"  {'total':20} {total:8.0f}   {total / jobs:6.1f} a member")
            else:
                total += us
            print(f"  {name:20} {us:8.0f}   {us / jobs:6.1f} a member")
        print()
    trainer = Trainer(**job_spec(0, jobs, batch), device="cpu")
    n = min(len(x), steps * batch)
    trainer.fit(x[:n], y[:n])
    seconds = trainer.fit(x[:n], y[:n])["seconds"][0]  # a second fit: warm
    print(f"solo step (Trainer.fit, one epoch of {n} rows): {seconds / (n / batch) * 1e6:.0f} µs")


class _Laps:
    """Each call records the seconds since the previous one (or since creation)."""

    def __init__(self, into: dict[str, list[float]]):
        self.into, self.last = into, time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.into.setdefault(name, []).append(now - self.last)
        self.last = now


# ------------------------------------------------------------------ main


Rates = dict[tuple[int, str], list[float]]  # (K, method) → samples/s of each round


def measure(jobs_list, x, y, batch, device, threads, rounds, only=None) -> Rates:
    """Samples/s per (K, method) and round; warm-up rounds (K = 1, 2) first: a fused
    update compiles its kernels for K = 1 and for every K ≥ 2 there, untimed."""
    methods = {n: m for n, m in METHODS.items() if device == "cpu" or n != "pack per core"}
    methods = {n: m for n, m in methods.items() if only is None or n in only}
    few = 8 * batch
    for jobs in (1, 2):
        for method in methods.values():
            method(jobs, x[:few], y[:few], batch, device, threads)
    rates: Rates = {}
    for jobs in jobs_list:
        for _ in range(rounds):
            for name, method in methods.items():
                rate = method(jobs, x, y, batch, device, threads)
                rates.setdefault((jobs, name), []).append(rate)
                print(f"  K={jobs:<3} {name:14} {rate:>11,.0f} samples/s", flush=True)
    return rates


def table(rates: dict[tuple[int, str], float], jobs_list, title: str) -> None:
    header = (
        f"{'K':>3}  {'packed':>9}  {'packed, eager':>13}  {'pack per core':>13}  "
        f"{'one at a time':>13}  {'K processes':>11}  {'packed × one at a time':>22}  "
        f"{'eager × one at a time':>21}  {'packed × processes':>18}"
    )
    print(f"\n{title}")
    print(header)
    print("-" * len(header))
    for jobs in jobs_list:
        p, e, c, s, q = (rates.get((jobs, m), float("nan")) for m in METHODS)
        print(
            f"{jobs:>3}  {p:>9,.0f}  {e:>13,.0f}  {c:>13,.0f}  {s:>13,.0f}  {q:>11,.0f}  "
            f"{p / s:>21.2f}×  {e / s:>20.2f}×  {p / q:>17.2f}×"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="K up to 16: under 2 minutes")
    parser.add_argument("--rows", type=int, default=8192, help="rows per job (default 8192)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--profile", action="store_true", help="a packed step's parts (CPU)")
    parser.add_argument("--jobs", type=int, default=HEADLINE_JOBS, help="K for --profile")
    parser.add_argument(
        "--methods", default=None, help=f"comma-separated, of: {', '.join(METHODS)} (default all)"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.profile:
        print(f"cpu, {args.threads} threads; torch {torch.__version__}")
        profile(args.jobs, *synthetic(args.rows), args.batch_size, steps=200)
        return
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
    only = None if args.methods is None else {m.strip() for m in args.methods.split(",")}
    if only is not None and not only <= set(METHODS):
        parser.error(f"--methods: unknown {', '.join(sorted(only - set(METHODS)))}")
    runs = measure(jobs_list, x, y, args.batch_size, args.device, args.threads, rounds, only)
    rates = {key: statistics.median(values) for key, values in runs.items()}
    best = {key: max(values) for key, values in runs.items()}
    what = f"batch {args.batch_size}, {args.device}"
    table(rates, jobs_list, f"total samples/s, {what}: median of the rounds")
    table(best, jobs_list, f"total samples/s, {what}: best round (the least disturbed)")
    if args.device == "cpu" and max(jobs_list) > args.threads:
        print(
            f"(K processes share {args.threads} cores: past K = {args.threads} each runs torch "
            "with one thread and they take turns on the cores)"
        )

    def ratio(jobs: int, of: dict[tuple[int, str], float]) -> str:
        nan = float("nan")
        return f"{of.get((jobs, 'packed'), nan) / of.get((jobs, 'one at a time'), nan):.2f}×"

    tail = "K=64 skipped with --quick" if args.quick else f"K=64: {ratio(64, rates)}"
    print(
        f"packed vs one at a time, {HEADLINE_JOBS} jobs at batch {args.batch_size} on "
        f"{args.device}: {ratio(HEADLINE_JOBS, rates)} ({tail}; best rounds: "
        f"{ratio(HEADLINE_JOBS, best)})"
    )


if __name__ == "__main__":
    main()
