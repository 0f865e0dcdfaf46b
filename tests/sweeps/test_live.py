"""A sweep end to end, with real API and worker processes on SQLite and
PostgreSQL: a grid on digits with ASHA. Trials that fall behind at a rung are
stopped there by their worker and end succeeded with ``pruned`` true; the
others train every epoch; each trial's value is its best epoch of the metric;
the best trial is a job with a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fitq.service.client import Client
from fitq.service.sweeps import asha
from tests.support.specs import digits_spec
from tests.support.stack import live_stack

pytestmark = pytest.mark.slow

EPOCHS = 4
ASHA = {"type": "asha", "min_epochs": 1, "reduction_factor": 3}
RUNGS = asha.rungs(1, 3, EPOCHS)  # [1, 3]
PARAMETERS = {
    # one good learning rate first, then two that barely move in 4 epochs
    "compile.optimizer.learning_rate": {"values": [0.003, 0.00001, 0.00003]},
    "seed": {"values": [0, 1]},
}


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_an_asha_grid_prunes_trials_at_rungs(
    tmp_path: Path, request: pytest.FixtureRequest, database: str
) -> None:
    url = None if database == "sqlite" else request.getfixturevalue("postgres_url")
    spec = digits_spec(hidden=(16,), fit={"epochs": EPOCHS})
    with live_stack(tmp_path, database_url=url) as live, Client(live.url, live.key) as client:
        sweep = client.sweep(
            spec, PARAMETERS, metric="val_loss", early_terminate=ASHA, name="digits-asha"
        )
        assert sweep["trials"]["total"] == 6
        sweep.wait(timeout=600)
        trials = sweep.trials()
        histories = {t["job_id"]: client.epochs(t["job_id"]) for t in trials}
        best = sweep.best
        assert best is not None
        probabilities = best.predict(spec_rows())
        table = sweep.table()

    assert sweep.status == "succeeded", sweep
    assert {t["status"] for t in trials} == {"succeeded"}
    pruned = [t for t in trials if t["pruned"]]
    assert pruned, "the slow learning rates should fall behind at the first rung"
    for trial in trials:
        history = histories[trial["job_id"]]
        assert trial["epochs"] == len(history)
        assert trial["value"] == min(row["val_loss"] for row in history)
        if trial["pruned"]:
            assert trial["epochs"] in RUNGS
        else:
            assert trial["epochs"] == EPOCHS
    values = [t["value"] for t in trials]
    assert values == sorted(values)
    assert sweep["best"]["job_id"] == trials[0]["job_id"] == best.id
    assert best["sweep_id"] == sweep.id and best.status == "succeeded"
    assert probabilities.shape == (2, 10)
    assert [row["rank"] for row in table] == list(range(1, 7))
    assert table[0]["val_loss"] == trials[0]["value"]


def spec_rows() -> Any:
    from sklearn.datasets import load_digits

    return load_digits().data[:2]
