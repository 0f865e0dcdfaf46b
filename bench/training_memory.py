"""Training memory: the submit-time estimate (``service/jobs/budget.py``) against
what training really takes, model by model.

Each model trains one epoch on random data in a fresh process on the CPU (or
``--device cuda``), with a checkpoint taken at the epoch end as the worker
does. Measured: the peak resident memory the process gained from just before
the ``Trainer`` was built to the end (``VmHWM``, reset first), and on CUDA
``torch.cuda.max_memory_allocated``. Printed beside the estimate's held part
(what a step boundary holds) and its total (what the limit bounds).

    .venv/bin/python -m bench.training_memory [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MIB = 1 << 20


def _dense(units: int, activation: str = "relu") -> dict[str, Any]:
    return {"type": "dense", "units": units, "activation": activation}


MODELS: dict[str, dict[str, Any]] = {
    "mlp 2×2048, adam, batch 256": {
        "layers": [_dense(2048), _dense(2048)],
        "rows": 20_000,
        "features": 256,
        "batch": 256,
    },
    "4096 + 40 activation layers, batch 512": {
        "layers": [_dense(4096)] + [{"type": "activation", "activation": "relu"}] * 40,
        "rows": 4_096,
        "features": 64,
        "batch": 512,
    },
    "dropout + batch norm, sgd, batch 1000": {
        "layers": [_dense(4096), {"type": "dropout", "rate": 0.5}]
        + [{"type": "batch_normalization"}, _dense(1024, "gelu")],
        "rows": 10_000,
        "features": 512,
        "batch": 1000,
        "optimizer": "sgd",
    },
    "wide data 200,000 × 1,000, validation 0.2": {
        "layers": [_dense(256)],
        "rows": 200_000,
        "features": 1_000,
        "batch": 128,
        "validation_split": 0.2,
    },
}


@dataclass
class Row:
    model: str
    device: str
    estimate_held_mib: float
    estimate_total_mib: float
    measured_mib: float
    measured_over_total: float


def _spec(m: dict[str, Any]) -> dict[str, Any]:
    from fitq.service.spec import parse_spec

    body = {
        "model": {"input_dim": m["features"], "layers": [*m["layers"], _dense(10, "softmax")]},
        "compile": {
            "optimizer": m.get("optimizer", "adam"),
            "loss": "sparse_categorical_crossentropy",
        },
        "fit": {
            "epochs": 1,
            "batch_size": m["batch"],
            "validation_split": m.get("validation_split", 0.0),
        },
        "dataset_id": "bench",
    }
    return parse_spec(body).model_dump(mode="json")


def _measure(name: str, device: str, out: Any) -> None:
    """In a fresh process: the estimate, then one epoch and a checkpoint."""
    import numpy as np
    import torch

    from fitq.service.datasets.shape import DataShape
    from fitq.service.jobs import budget
    from fitq.service.spec import parse_spec
    from fitq.worker.engine import Trainer
    from tests.security import rss

    m = MODELS[name]
    spec = _spec(m)
    n, f = m["rows"], m["features"]
    shape = DataShape(n_rows=n, n_features=f, kind="classification", n_classes=10, target_dim=1)
    parameters = parse_spec(spec).model.parameter_count()
    est = budget.estimate(spec, parameters, shape)
    x = np.random.default_rng(0).normal(size=(n, f)).astype(np.float32)
    x.setflags(write=False)  # as the worker's memory-mapped dataset: the trainer copies it
    y = (np.arange(n) % 10).astype(np.int64)
    torch.set_num_threads(1)
    torch.zeros(1) @ torch.zeros(1)  # the allocator and BLAS warmed before the baseline
    before = rss.rss()
    rss.reset_peak()
    trainer = Trainer(spec["model"], spec["compile"], spec["fit"], seed=0, device=device)
    trainer.fit(x, y, on_epoch_end=lambda epoch, logs: trainer.checkpoint())
    if device.startswith("cuda"):
        measured = torch.cuda.max_memory_allocated()
    else:
        measured = rss.peak() - before
    out.put(
        Row(
            model=name,
            device=device,
            estimate_held_mib=round(est.held / MIB, 1),
            estimate_total_mib=round(est.total / MIB, 1),
            measured_mib=round(measured / MIB, 1),
            measured_over_total=round(measured / est.total, 2),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    rows = []
    for name in MODELS:
        queue = context.Queue()
        proc = context.Process(target=_measure, args=(name, args.device, queue))
        proc.start()
        row = queue.get()
        proc.join()
        rows.append(row)
        print(
            f"{row.model:44} held {row.estimate_held_mib:8.1f} MiB  total "
            f"{row.estimate_total_mib:8.1f} MiB  measured {row.measured_mib:8.1f} MiB  "
            f"({row.measured_over_total:.2f} × total)",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))


if __name__ == "__main__":
    main()
