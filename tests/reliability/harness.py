"""The fault-injection tests' tools: real worker processes to kill, stop and
restart (tests/support/fleet.py, with this folder's short lease; one job at a
time unless a scenario packs, ``PACKED``); the reference weights of an
uninterrupted run, solo or in a pack; and the figures each scenario reports.
Faults go in through the worker's seams (tests/support/faults.py).

Every wait is a poll on a condition with a deadline; no test asserts a time.
Latencies go to ``test-artifacts/reliability.json`` (one entry per scenario and
backend), which ``bench/reliability_report.py`` turns into the table of
docs/reliability.md.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors

from fitq.service.db.models import Job
from fitq.service.spec import parse_spec
from fitq.service.store import ArtifactStore
from tests.support import specs
from tests.support.artifacts import ARTIFACTS, update_json
from tests.support.faults import Faults
from tests.support.fleet import Fleet
from tests.support.processes import fitq_env
from tests.support.zygote import Zygote

ARTIFACT = ARTIFACTS / "reliability.json"
LEASE_SECONDS = 2
"""Short, so a dead worker's job is rescued quickly; heartbeats every 2/3 s."""
DEADLINE_SECONDS = 120
"""The deadline of every wait here (``wait_for(..., timeout=DEADLINE_SECONDS)``)."""
POLL_SECONDS = 0.02
SOLO = {"FITQ_PACK_MAX": "1"}
"""The fleet's default: each job trains alone, so a kill takes one job (and the
reference is the solo trainer's)."""
PACKED = {"FITQ_PACK_MAX": "16"}
"""A scenario that packs: compatible jobs train together (the reference is then the
pack's, ``reference_pack_weights``)."""


def iris_spec(seed: int = 0, epochs: int = 20, batch_size: int = 2, **fit: Any) -> dict[str, Any]:
    """The worker tests' iris job, longer: ``batch_size`` 2 makes 75 steps an epoch."""
    return specs.iris_spec(seed=seed, epochs=epochs, batch_size=batch_size, **fit)


# -- weights ------------------------------------------------------------------------


def model_weights(store: ArtifactStore, row: Job) -> dict[str, torch.Tensor]:
    assert row.model_key is not None, f"job {row.id} has no model ({row.status}, {row.error})"
    return load_safetensors(store.get_bytes(row.model_key))


_references: dict[str, dict[str, torch.Tensor]] = {}


def reference_weights(spec: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights of an uninterrupted run of ``spec``, trained here with the
    engine on one thread (as the workers are, ``FITQ_THREADS=1``)."""
    normalized = parse_spec(spec).model_dump(mode="json")
    key = json.dumps(normalized, sort_keys=True)
    if key not in _references:
        from fitq.worker import data
        from fitq.worker.engine import Trainer

        x, y = data.load_arrays(None, None, normalized["dataset_id"])  # type: ignore[arg-type]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            trainer = Trainer(
                model=normalized["model"],
                compile=normalized["compile"],
                fit=normalized["fit"],
                seed=normalized["seed"],
                device="cpu",
            )
            trainer.fit(x, y)
            _references[key] = load_safetensors(trainer.export_safetensors())
        finally:
            torch.set_num_threads(threads)
    return _references[key]


def reference_pack_weights(spec: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights of an uninterrupted packed run of ``spec``: on the CPU a member's
    results do not depend on its packmates (fitq.worker.engine.pack), so a pack of
    it alone is the reference for any pack it trains in; one thread, as the workers."""
    normalized = parse_spec(spec).model_dump(mode="json")
    key = "pack:" + json.dumps(normalized, sort_keys=True)
    if key not in _references:
        from fitq.worker import data
        from fitq.worker.engine.pack import Pack

        x, y = data.load_arrays(None, None, normalized["dataset_id"])  # type: ignore[arg-type]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            pack = Pack("cpu")
            pack.add("reference", normalized, x, y)
            while not pack.run_epoch()["reference"].done:
                pass
            _references[key] = load_safetensors(pack.export("reference"))
        finally:
            torch.set_num_threads(threads)
    return _references[key]


def assert_bit_identical(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for name in got:
        assert torch.equal(got[name], want[name]), f"{name} differs from the uninterrupted run"


# -- worker processes ---------------------------------------------------------------


@contextmanager
def fleet(
    home: Path,
    database_url: str,
    storage_url: str,
    zygote: Zygote | None,
    faults: Faults | None = None,
    **extra_env: str,
) -> Iterator[Fleet]:
    """Real worker processes on one database and store, with a short lease,
    one thread each, one job at a time (``SOLO``) unless ``extra_env`` says
    otherwise (``PACKED``), and ``faults`` unless started with their own; forked
    from ``zygote``, or processes of their own when it is None. Killed (SIGKILL)
    on the way out."""
    env = fitq_env(
        home,
        FITQ_DATABASE_URL=database_url,
        FITQ_STORAGE_URL=storage_url,
        FITQ_LEASE_SECONDS=str(LEASE_SECONDS),
        FITQ_POLL_SECONDS="0.2",
        FITQ_THREADS="1",
        **{**SOLO, **extra_env},
    )
    workers = Fleet(home, env, zygote, faults or Faults())
    try:
        yield workers
    finally:
        workers.close()


# -- figures ------------------------------------------------------------------------


def summary(seconds: list[float]) -> dict[str, float | None]:
    """p50 and max of some latencies, in milliseconds."""
    if not seconds:
        return {"p50_ms": None, "max_ms": None, "n": 0}
    return {
        "p50_ms": round(statistics.median(seconds) * 1000, 1),
        "max_ms": round(max(seconds) * 1000, 1),
        "n": len(seconds),
    }


@dataclass(frozen=True)
class Scene:
    """What a scenario runs against: an empty database at head (``url``, named
    ``backend`` in the figures), an owner with a key, the workers' home, the
    store (its URL for the workers, the store for reading what they wrote), and
    the warm parent kill tests fork workers from."""

    url: str
    backend: str
    owner_id: str
    home: Path
    storage_url: str
    store: ArtifactStore
    zygote: Zygote

    def fleet(
        self, faults: Faults | None = None, *, forked: bool = True, **extra_env: str
    ) -> AbstractContextManager[Fleet]:
        """:func:`fleet` on this scene: workers forked from its warm parent, or
        (``forked=False``) processes of their own, as ``fitq worker`` starts."""
        zygote = self.zygote if forked else None
        return fleet(self.home, self.url, self.storage_url, zygote, faults, **extra_env)


def record(scenario: str, backend: str, **figures: Any) -> None:
    """Keep ``figures`` for ``scenario`` on ``backend`` in the JSON artifact."""
    entry = {"at": time.strftime("%Y-%m-%d %H:%M"), **figures}
    update_json(ARTIFACT, lambda data: data.setdefault(scenario, {}).update({backend: entry}))
