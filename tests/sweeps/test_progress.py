"""A trial's progress as its worker writes it with each epoch
(``progress.after_epoch``, in the History row's transaction): its value, and
ASHA's decision at a rung from the values the sweep's trials recorded there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from fitq.service.db.engine import session_factory, transaction
from fitq.service.db.models import Job, SweepTrial
from fitq.service.jobs import submission
from fitq.service.sweeps import service
from fitq.service.sweeps.request import SweepCreate
from tests.conftest import SPEC, Owner
from tests.sweeps.conftest import claim, epoch, sweep_body

ASHA = {"type": "asha", "min_epochs": 1, "reduction_factor": 3}


def make_sweep(url: str, owner: Owner, **overrides: Any) -> list[str]:
    """A sweep of ``overrides`` created through the service; its job ids in trial order."""
    with transaction(url) as session:
        sweep = service.create(
            session, owner.id, SweepCreate.model_validate(sweep_body(**overrides))
        )
        trials = session.scalars(
            select(SweepTrial.job_id)
            .where(SweepTrial.sweep_id == sweep.id)
            .order_by(SweepTrial.number)
        )
        return list(trials)


def trial(url: str, job_id: str) -> SweepTrial:
    with session_factory(url)() as session:
        row = session.get(SweepTrial, job_id)
        assert row is not None
        return row


def running(url: str, count: int) -> dict[str, int]:
    """Claim ``count`` jobs: each one's attempt, by id."""
    return dict(claim(url) for _ in range(count))


def seeds(n: int, epochs: int = 9) -> dict[str, Any]:
    spec = sweep_body()["spec"]
    spec["fit"]["epochs"] = epochs
    return {"spec": spec, "parameters": {"seed": {"values": list(range(n))}}}


class TestValue:
    def test_is_the_best_epoch_so_far_for_the_goal(self, database_url: str, owner: Owner) -> None:
        [low] = make_sweep(database_url, owner, **seeds(1))
        attempts = running(database_url, 1)
        for number, loss in enumerate([0.8, 0.3, 0.5], start=1):
            assert epoch(database_url, low, attempts[low], number, loss=loss, accuracy=0.5) is False
        assert trial(database_url, low).value == 0.3

        [high] = make_sweep(
            database_url, owner, **seeds(1), metric={"name": "accuracy", "goal": "maximize"}
        )
        attempts = running(database_url, 1)
        for number, accuracy in enumerate([0.6, 0.9, 0.7], start=1):
            epoch(database_url, high, attempts[high], number, loss=1.0, accuracy=accuracy)
        assert trial(database_url, high).value == 0.9

    def test_a_job_of_no_sweep_goes_on(
        self, database_url: str, owner: Owner, job_factory: Callable[..., Job]
    ) -> None:
        with transaction(database_url) as session:
            job, _ = submission.submit(session, owner.id, SPEC)
        attempts = running(database_url, 1)
        assert epoch(database_url, job.id, attempts[job.id], 1, loss=0.1) is False


class TestAsha:
    """Rungs at epochs 1, 3 (and 9, the last, is none) with a reduction factor of 3."""

    def test_only_the_best_third_at_a_rung_goes_on(self, database_url: str, owner: Owner) -> None:
        a, b, c = make_sweep(database_url, owner, **seeds(3), early_terminate=ASHA)
        attempts = running(database_url, 3)
        # a is alone at rung 1; b is worse than a; c is the best so far
        assert epoch(database_url, a, attempts[a], 1, loss=0.5) is False
        assert epoch(database_url, b, attempts[b], 1, loss=0.7) is True
        assert epoch(database_url, c, attempts[c], 1, loss=0.4) is False
        assert (trial(database_url, b).pruned, trial(database_url, b).value) == (True, 0.7)
        assert not trial(database_url, a).pruned and not trial(database_url, c).pruned
        # epoch 2 is no rung: a goes on whatever its value
        assert epoch(database_url, a, attempts[a], 2, loss=9.0) is False
        assert epoch(database_url, c, attempts[c], 2, loss=0.3) is False
        # rung 3: c first (alone), then a, worse
        assert epoch(database_url, c, attempts[c], 3, loss=0.2) is False
        assert epoch(database_url, a, attempts[a], 3, loss=0.45) is True

    def test_maximize_keeps_the_highest(self, database_url: str, owner: Owner) -> None:
        a, b = make_sweep(
            database_url,
            owner,
            **seeds(2),
            early_terminate={**ASHA, "reduction_factor": 2},
            metric={"name": "accuracy", "goal": "maximize"},
        )
        attempts = running(database_url, 2)
        assert epoch(database_url, a, attempts[a], 1, loss=1.0, accuracy=0.6) is False
        assert epoch(database_url, b, attempts[b], 1, loss=1.0, accuracy=0.8) is False
        assert epoch(database_url, a, attempts[a], 2, loss=1.0, accuracy=0.5) is False
        assert epoch(database_url, b, attempts[b], 2, loss=1.0, accuracy=0.4) is True

    def test_a_pruned_trial_that_trains_on_is_stopped_again(
        self, database_url: str, owner: Owner
    ) -> None:
        """A worker lost after the rung's commit resumes from that epoch's
        checkpoint: the next epoch stops it (its row already says pruned)."""
        a, b = make_sweep(database_url, owner, **seeds(2), early_terminate=ASHA)
        attempts = running(database_url, 2)
        epoch(database_url, a, attempts[a], 1, loss=0.1)
        assert epoch(database_url, b, attempts[b], 1, loss=0.9) is True
        assert epoch(database_url, b, attempts[b], 2, loss=0.05) is True
        assert trial(database_url, b).value == 0.05

    def test_without_early_terminate_nothing_stops(self, database_url: str, owner: Owner) -> None:
        a, b = make_sweep(database_url, owner, **seeds(2))
        attempts = running(database_url, 2)
        assert epoch(database_url, a, attempts[a], 1, loss=0.1) is False
        assert epoch(database_url, b, attempts[b], 1, loss=0.9) is False

    @pytest.mark.parametrize("epochs", [1, 2])
    def test_no_rung_below_a_short_trials_last_epoch(
        self, database_url: str, owner: Owner, epochs: int
    ) -> None:
        a, b = make_sweep(database_url, owner, **seeds(2, epochs=epochs), early_terminate=ASHA)
        attempts = running(database_url, 2)
        epoch(database_url, a, attempts[a], 1, loss=0.1)
        assert epoch(database_url, b, attempts[b], 1, loss=0.9) is (epochs > 1)
