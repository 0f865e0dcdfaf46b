"""Where one fitq training step spends its time, section by section (CPU).

    .venv/bin/python -m bench.engine_profile [--batch 32] [--threads 2] [--steps 100]

Runs the engine's step on the benchmark's model (784 → 128 → 64 → 10, Adam) and prints
the median time of each part: gathering the batch, forward, loss (value and gradient),
metrics, backward, optimizer update. On the CPU each op runs synchronously, so the
wall clock of each part is its cost. Add --torch-profile for torch.profiler's table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from bench.engine import model_spec
from fitq.worker.engine import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--torch-profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    b, n = args.batch, args.batch * args.steps
    rng = np.random.default_rng(0)
    x = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    t = Trainer(**model_spec(b, 1), device="cpu")
    t._prepare(x, y, None)
    t._perm = torch.randperm(n)
    times: dict[str, list[float]] = {}

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        times.setdefault(name, []).append(time.perf_counter() - start)
        return out

    def steps():
        for s in range(args.steps):
            cells = t._cells[s]
            xb, yb = timed("batch gather", lambda s=s: t._batch(s * b, (s + 1) * b))
            out = timed("forward", lambda xb=xb: t.model.forward(xb, t._train_ctx))
            dout = timed(
                "loss + ∂loss", lambda out=out, yb=yb, c=cells: t.loss.total_and_grad(out, yb, c[0])
            )
            timed(
                "accuracy",
                lambda out=out, yb=yb, c=cells: t.metrics[0].total(
                    out, yb, c[1], True, t.model.fused_activation
                ),
            )
            timed("backward", lambda d=dout: t.model.backward(d))
            timed("optimizer", lambda: t.optimizer.step([t.model.flat_grads]))

    with torch.no_grad():
        for _ in range(3):
            steps()
        if args.torch_profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                steps()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
    total = 0.0
    print(f"batch {b}, {args.threads} thread(s): median µs per step")
    for name, values in times.items():
        median = statistics.median(values[args.steps :]) * 1e6
        total += median
        print(f"  {name:14} {median:8.1f}")
    print(f"  {'total':14} {total:8.1f}  → {b / total * 1e6:,.0f} samples/s")


if __name__ == "__main__":
    main()
