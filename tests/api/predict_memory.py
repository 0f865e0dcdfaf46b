"""Peak memory of one predict call in a process of its own: what the API's
``prediction.outputs`` adds to the process's high-water mark (VmHWM) for
``--rows`` rows through a model with one hidden layer of ``--units`` units.

    python -m tests.api.predict_memory --units 200000 --rows 8192 --max-bytes 268435456

prints one JSON line: the budget, the rows per chunk, the peak added (MiB) and
the seconds the call took. ``--max-bytes`` of 1 TiB reproduces the old
behaviour (8,192 rows a pass, whatever the width)."""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch
from safetensors.torch import save as save_safetensors

from fitq.service.jobs import prediction
from fitq.worker.engine import Model, load_predictor

FEATURES = 4
CLASSES = 3


def peak_mib() -> float:
    """The process's resident high-water mark (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def model_spec(units: int) -> dict[str, object]:
    layers = [
        {"type": "dense", "units": units, "activation": "relu"},
        {"type": "dense", "units": CLASSES, "activation": "softmax"},
    ]
    from fitq.service.spec import parse_spec  # normalized, every default filled

    raw = {
        "model": {"input_dim": FEATURES, "layers": layers},
        "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy"},
        "fit": {"epochs": 1},
        "dataset_id": "iris",
    }
    return parse_spec(raw).model_dump(mode="json")["model"]  # type: ignore[no-any-return]


def measure(units: int, rows: int, max_bytes: int) -> dict[str, float]:
    torch.set_num_threads(1)
    spec = model_spec(units)
    weights = save_safetensors(dict(Model(spec, 0, "cpu").named_tensors()))
    predictor = load_predictor(spec, weights, device="cpu")
    x = np.random.default_rng(0).normal(size=(rows, FEATURES)).astype(np.float32)
    prediction.outputs(predictor, x[:1], max_bytes)  # warm: torch's own allocations
    before = peak_mib()
    started = time.perf_counter()
    out = prediction.outputs(predictor, x, max_bytes)
    seconds = time.perf_counter() - started
    assert out.shape == (rows, CLASSES)
    return {
        "units": units,
        "rows": rows,
        "max_bytes": max_bytes,
        "rows_per_chunk": prediction.rows_per_chunk(predictor.model, max_bytes),
        "peak_added_mib": round(peak_mib() - before, 1),
        "seconds": round(seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=200_000)
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--max-bytes", type=int, default=256 * 1024 * 1024)
    args = parser.parse_args()
    print(json.dumps(measure(args.units, args.rows, args.max_bytes)))


if __name__ == "__main__":
    main()
