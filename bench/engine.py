"""Training speed: fitq's engine against PyTorch, on SPEC's opening Keras model.

    .venv/bin/python -m bench.engine [--quick] [--device cpu|cuda] [--threads N]

The model is 784 → 128 relu → 64 relu → 10 softmax, Adam (Keras defaults), sparse
categorical cross-entropy, on synthetic MNIST-shaped data (60,000 × 784 float32,
10 classes). For batch sizes 32, 128 and 1024 it prints samples/s, the median of
several timed epochs after a warm-up, for:

  fitq          worker.engine.Trainer.fit (accuracy tracked, as the Keras snippet asks)
  idiomatic     nn.Sequential + torch.optim.Adam + autograd + DataLoader(TensorDataset,
                shuffle=True), batches moved to the device in the loop
  tight         the same model and autograd, no DataLoader (an index_select of a shuffled
                permutation on device-resident data), Adam(fused=True) (foreach where
                fused is unavailable)
  floor         the eight GEMMs of forward + backward alone (3 forward, 3 dW, 2 dX) into
                preallocated outputs: what any implementation must at least do

with each one's ratio to idiomatic PyTorch, its share of the floor and its peak memory
(CPU: peak resident set growth during an epoch; CUDA: peak allocated), then fitq at
batch 128 with a busy-loop process occupying one core beside it (and, on the CPU, the
same with one thread fewer). The methods take turns epoch by epoch, so load from other
processes falls on all of them alike; the first round is the warm-up. The last line:
`fitq vs idiomatic PyTorch at batch 32/128/1024: A / B / C`.

A benchmark, never a test; it sets torch's thread count itself (--threads, default
all cores).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fitq.service.spec import parse_spec
from fitq.worker.engine import Trainer
from tests.support.specs import spec_factory

FEATURES, HIDDEN1, HIDDEN2, CLASSES = 784, 128, 64, 10
BATCH_SIZES = (32, 128, 1024)


def model_spec(batch_size: int, epochs: int) -> dict:
    """The Trainer's arguments (model, compile, fit, seed) of the benchmark's model,
    normalized as the service stores them (the engine takes nothing else)."""
    spec = parse_spec(
        spec_factory(
            input_dim=FEATURES,
            hidden=(HIDDEN1, HIDDEN2),
            classes=CLASSES,
            fit={"epochs": epochs, "batch_size": batch_size, "shuffle": True},
        )
    ).model_dump(mode="json")
    return {key: spec[key] for key in ("model", "compile", "fit", "seed")}


# -------------------------------------------------------------------------- memory


class PeakMemory:
    """CPU: growth of the peak resident set (VmHWM, reset through clear_refs) over the
    resident set at the start; CUDA: torch's peak allocated bytes. In MiB."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            with contextlib.suppress(OSError):  # resets VmHWM to the current RSS
                Path("/proc/self/clear_refs").write_text("5")
            self.start = _proc_status("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self.start) / 2**20
        else:
            self.mib = (_proc_status("VmHWM") - self.start) / 2**20


def _proc_status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


# -------------------------------------------------------------------------- the runs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# Each maker returns `epoch() -> samples/s`, one pass over the rows per call, so that
# the methods can take turns epoch by epoch (load from other processes then falls on
# all of them alike).

Epoch = Callable[[], float]


def make_fitq(x: np.ndarray, y: np.ndarray, batch: int, device: torch.device) -> Epoch:
    def epoch() -> float:
        # a fresh trainer per epoch (fit runs whole epochs); its setup is not timed
        trainer = Trainer(**model_spec(batch, 1), device=str(device))
        return trainer.fit(x, y)["samples_per_second"][0]

    return epoch


def _torch_model(device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(FEATURES, HIDDEN1),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN1, HIDDEN2),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN2, CLASSES),
    ).to(device)


def make_idiomatic(x: np.ndarray, y: np.ndarray, batch: int, device: torch.device) -> Epoch:
    model = _torch_model(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
        batch_size=batch,
        shuffle=True,
    )

    def epoch() -> float:
        start = time.perf_counter()
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
        _sync(device)
        return len(x) / (time.perf_counter() - start)

    return epoch


def _adam_fast(params) -> torch.optim.Optimizer:
    try:
        return torch.optim.Adam(params, lr=1e-3, eps=1e-7, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=1e-3, eps=1e-7, foreach=True)


def make_tight(x: np.ndarray, y: np.ndarray, batch: int, device: torch.device) -> Epoch:
    model = _torch_model(device)
    opt = _adam_fast(list(model.parameters()))
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    n = len(x)

    def epoch() -> float:
        start = time.perf_counter()
        perm = torch.randperm(n, device=device)
        for lo in range(0, n, batch):
            idx = perm[lo : lo + batch]
            xb, yb = xt.index_select(0, idx), yt.index_select(0, idx)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        return n / (time.perf_counter() - start)

    return epoch


def make_floor(x: np.ndarray, y: np.ndarray, batch: int, device: torch.device) -> Epoch:
    n = len(x)
    g = torch.Generator().manual_seed(0)
    w = [
        torch.randn(a, b, generator=g).mul_(0.05).to(device)
        for a, b in ((FEATURES, HIDDEN1), (HIDDEN1, HIDDEN2), (HIDDEN2, CLASSES))
    ]
    xt = torch.from_numpy(x).to(device)
    bufs: dict[int, list[torch.Tensor]] = {}
    for lo in range(0, n, batch):
        m = min(batch, n - lo)
        if m not in bufs:
            bufs[m] = [torch.empty(m, d, device=device) for d in (HIDDEN1, HIDDEN2, CLASSES)]
            bufs[m] += [torch.empty_like(t) for t in w]
            bufs[m] += [
                torch.empty(m, HIDDEN2, device=device),
                torch.empty(m, HIDDEN1, device=device),
            ]

    def epoch() -> float:
        start = time.perf_counter()
        for lo in range(0, n, batch):
            xb = xt[lo : lo + batch]
            h1, h2, z, dw1, dw2, dw3, dh2, dh1 = bufs[xb.shape[0]]
            torch.mm(xb, w[0], out=h1)  # forward
            torch.mm(h1, w[1], out=h2)
            torch.mm(h2, w[2], out=z)
            torch.mm(h2.t(), z, out=dw3)  # backward (z stands in for dZ)
            torch.mm(z, w[2].t(), out=dh2)
            torch.mm(h1.t(), dh2, out=dw2)
            torch.mm(dh2, w[1].t(), out=dh1)
            torch.mm(xb.t(), dh1, out=dw1)
        _sync(device)
        return n / (time.perf_counter() - start)

    return epoch


def _busy() -> None:
    while True:
        pass


# -------------------------------------------------------------------------- main


def take_turns(
    makers: dict[str, Callable[..., Epoch]],
    args: tuple,
    warmup: int,
    timed: int,
    device: torch.device,
) -> dict[str, tuple[float, float]]:
    """Per method: (median samples/s over the timed rounds, peak memory growth in MiB),
    the methods taking one epoch each in turn, round after round."""
    epochs = {name: make(*args, device) for name, make in makers.items()}
    rates: dict[str, list[float]] = {name: [] for name in makers}
    peaks: dict[str, float] = {name: 0.0 for name in makers}
    for round_ in range(warmup + timed):
        for name, epoch in epochs.items():
            with PeakMemory(device) as mem:
                rate = epoch()
            peaks[name] = max(peaks[name], mem.mib)
            if round_ >= warmup:
                rates[name].append(rate)
    return {name: (statistics.median(rates[name]), peaks[name]) for name in makers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="fewer rows and epochs: under 2 min")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rows", type=int, default=None, help="rows per epoch (default 60000)")
    parser.add_argument("--timed-epochs", type=int, default=None)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = args.rows or (10_000 if args.quick else 60_000)
    timed = args.timed_epochs or (2 if args.quick else 3)
    warmup = 1
    rng = np.random.default_rng(0)
    x = rng.random((rows, FEATURES), dtype=np.float32)
    y = rng.integers(0, CLASSES, rows).astype(np.int64)

    name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu, {args.threads} threads"
    print(
        f"fitq engine benchmark: {name}; torch {torch.__version__}; {rows} rows × {FEATURES}, "
        f"median of {timed} timed epochs after {warmup} warm-up"
    )
    methods = {
        "fitq": make_fitq,
        "idiomatic PyTorch": make_idiomatic,
        "tight PyTorch": make_tight,
        "GEMM floor": make_floor,
    }
    results: dict[tuple[int, str], tuple[float, float]] = {}
    for batch in BATCH_SIZES:
        for label, result in take_turns(methods, (x, y, batch), warmup, timed, device).items():
            results[(batch, label)] = result

    busy = mp.get_context("spawn").Process(target=_busy, daemon=True)
    busy.start()
    try:
        fitq = {"fitq": make_fitq}
        busy_rows = {"fitq, one core busy": take_turns(fitq, (x, y, 128), 1, timed, device)["fitq"]}
        if device.type == "cpu" and args.threads > 1:  # what FITQ_THREADS = free cores gives
            torch.set_num_threads(args.threads - 1)
            busy_rows[f"  same, {args.threads - 1} thread(s)"] = take_turns(
                fitq, (x, y, 128), 1, timed, device
            )["fitq"]
            torch.set_num_threads(args.threads)
    finally:
        busy.terminate()
        busy.join()

    header = (
        f"{'batch':>5}  {'':26} {'samples/s':>11} {'× idiomatic':>11} {'of floor':>9} "
        f"{'peak MiB':>9}"
    )
    print(header)
    print("-" * len(header))
    for batch in BATCH_SIZES:
        base = results[(batch, "idiomatic PyTorch")][0]
        floor = results[(batch, "GEMM floor")][0]
        for label in methods:
            rate, mib = results[(batch, label)]
            print(
                f"{batch:>5}  {label:26} {rate:>11,.0f} {rate / base:>10.2f}× {rate / floor:>8.0%} "
                f"{mib:>9.1f}"
            )
    base = results[(128, "idiomatic PyTorch")][0]
    floor = results[(128, "GEMM floor")][0]
    for label, (rate, mib) in busy_rows.items():
        print(
            f"{128:>5}  {label:26} {rate:>11,.0f} {rate / base:>10.2f}× {rate / floor:>8.0%} "
            f"{mib:>9.1f}"
        )
    ratios = [results[(b, "fitq")][0] / results[(b, "idiomatic PyTorch")][0] for b in BATCH_SIZES]
    print(
        "fitq vs idiomatic PyTorch at batch 32/128/1024: " + " / ".join(f"{r:.2f}" for r in ratios)
    )


if __name__ == "__main__":
    main()
