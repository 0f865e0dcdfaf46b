"""A trial's progress, written with each of its epochs: its value, and whether
early termination stops it.

:func:`after_epoch` runs in the transaction of the epoch's History row
(``worker/reporter.py``: ``Reporter.epoch``, after ``queue.record_epoch``), so
the trial's value never lags its History and an ASHA rung sees every epoch row
committed before it. A trial pruned at a rung is stopped by its worker at that
epoch boundary and finished as ``succeeded`` (``worker/attempt.py``); its
trial row says ``pruned``.

A pruned trial whose worker was lost before it finished resumes from the
rung's checkpoint and trains one more epoch: that epoch's call answers "stop"
again (the row already says ``pruned``), so it still ends one epoch later.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fitq.service.db.models import Job, JobEpoch, Sweep, SweepTrial
from fitq.service.sweeps import asha, ranking


def after_epoch(session: Session, job_id: str, epoch: int, metrics: dict[str, Any]) -> bool:
    """Record ``epoch`` of ``job_id`` for its sweep (nothing for a job of no
    sweep) and return whether the trial should stop here."""
    found = session.execute(
        select(SweepTrial.value, SweepTrial.pruned, Sweep.id, Sweep.metric, Sweep.goal)
        .add_columns(Sweep.request, Job.epochs)
        .join(Sweep, Sweep.id == SweepTrial.sweep_id)
        .join(Job, Job.id == SweepTrial.job_id)
        .where(SweepTrial.job_id == job_id)
    ).first()
    if found is None:
        return False
    maximize = found.goal == "maximize"
    here = ranking.trial_value([metrics], found.metric, maximize=maximize)
    best = ranking.trial_value(
        [{found.metric: v} for v in (found.value, here) if v is not None],
        found.metric,
        maximize=maximize,
    )
    if best != found.value:
        session.execute(update(SweepTrial).where(SweepTrial.job_id == job_id).values(value=best))
    if found.pruned:
        return True
    rule = found.request.get("early_terminate")
    if rule is None:
        return False
    min_epochs, factor = int(rule["min_epochs"]), int(rule["reduction_factor"])
    if epoch not in asha.rungs(min_epochs, factor, found.epochs):
        return False
    recorded = _values_at(session, found.id, epoch, found.metric)
    value = math.nan if here is None else here
    if asha.keeps_going(value, recorded, factor, maximize=maximize):
        return False
    session.execute(update(SweepTrial).where(SweepTrial.job_id == job_id).values(pruned=True))
    return True


def _values_at(session: Session, sweep_id: str, epoch: int, metric: str) -> list[float]:
    """The metric's value at ``epoch`` of every trial of the sweep that reached
    it (NaN where the row has none)."""
    rows = session.scalars(
        select(JobEpoch.metrics)
        .join(SweepTrial, SweepTrial.job_id == JobEpoch.job_id)
        .where(SweepTrial.sweep_id == sweep_id, JobEpoch.epoch == epoch)
    )
    values = []
    for metrics in rows:
        value = metrics.get(metric)
        values.append(float(value) if isinstance(value, int | float) else math.nan)
    return values
