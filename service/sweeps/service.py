"""Creating and cancelling sweeps.

A sweep is created whole or not at all, in the caller's one transaction: every
trial is expanded and validated exactly as ``POST /v1/jobs`` validates a job
(``jobs.submission.validate``: the spec, its datasets and their owner), the
metric is checked against every trial's History, the owner's queued-jobs quota
is checked for all the trials at once, and only then are the sweep, its jobs
(``queue.enqueue``, through ``submission.new_job``) and its trial rows written.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fitq.service import queue
from fitq.service import spec as specs
from fitq.service.db.models import TERMINAL_STATUSES, Job, Sweep, SweepTrial, utcnow
from fitq.service.errors import InvalidSpec
from fitq.service.jobs import submission
from fitq.service.spec.job import MAX_TAGS, unique_tags
from fitq.service.sweeps import expand
from fitq.service.sweeps.request import SweepCreate

log = logging.getLogger("fitq.sweeps")


def create(
    session: Session,
    owner_id: str,
    request: SweepCreate,
    *,
    limits: specs.SpecLimits = specs.DEFAULT_LIMITS,
    bounds: submission.Bounds | None = None,
    max_queued_jobs: int | None = None,
) -> Sweep:
    """Validate every trial of ``request`` and queue them all (see the module
    docstring); a bad combination is a 422 naming its parameter values, a full
    quota the submission's 429, and nothing is written."""
    trials = expand.trial_specs(
        request,
        lambda spec: submission.validate(session, owner_id, spec, limits=limits, bounds=bounds),
    )
    metric = canonical_metric(request.metric.name)
    check_metric(metric, trials)
    tags = [trial_tags(trial, request.tags) for trial in trials]
    if max_queued_jobs is not None:
        submission.check_queue_quota(session, owner_id, max_queued_jobs, adding=len(trials))
    sweep = Sweep(
        owner_id=owner_id,
        name=request.name,
        request=request.model_dump(mode="json"),
        metric=metric,
        goal=request.metric.goal,
        tags=request.tags,
        created_at=utcnow(),
    )
    session.add(sweep)
    session.flush()
    for number, trial in enumerate(trials):
        name = None if trial.validated.get("name") else f"{request.name or 'sweep'}-{number}"
        job = submission.new_job(
            owner_id, trial.validated, name=name, tags=tags[number], sweep_id=sweep.id
        )
        queue.enqueue(session, job)
        session.add(
            SweepTrial(job_id=job.id, sweep_id=sweep.id, number=number, params=trial.params)
        )
    session.flush()
    log.info(
        "sweep created",
        extra={
            "action": "sweep",
            "sweep_id": sweep.id,
            "trials": len(trials),
            "owner_id": owner_id,
        },
    )
    return sweep


def cancel(session: Session, sweep: Sweep) -> None:
    """Cancel every trial not yet ended (each through ``queue.request_cancel``:
    a queued one at once, a running one at its next step); idempotent."""
    live = session.scalars(
        select(Job.id)
        .where(Job.sweep_id == sweep.id, Job.status.not_in(TERMINAL_STATUSES))
        .order_by(Job.id)
    )
    for job_id in list(live):
        queue.request_cancel(session, job_id)


def canonical_metric(name: str) -> str:
    """The History name ``name`` stands for, as early stopping's ``monitor``
    reads it (``val_acc`` → ``val_accuracy``): one spelling rule for both."""
    return specs.EarlyStopping.model_validate({"monitor": name}).monitor


def history_names(normalized: dict[str, Any]) -> list[str]:
    """The names a job's History has: ``loss`` and each compiled metric, and
    their ``val_`` twins when the job has validation data."""
    logged = ["loss", *normalized["compile"]["metrics"]]
    fit = normalized["fit"]
    has_validation = fit.get("validation_split", 0) > 0 or normalized.get("validation_dataset_id")
    return logged + [f"val_{name}" for name in logged] if has_validation else logged


def trial_tags(trial: expand.Trial, sweep_tags: list[str]) -> list[str]:
    """A trial's tags: its spec's (validated with it), then the sweep's; 422 past
    ``MAX_TAGS`` together."""
    tags = unique_tags([*(trial.spec.get("tags") or []), *sweep_tags])
    if len(tags) > MAX_TAGS:
        raise InvalidSpec(
            f"a trial would have {len(tags)} tags, its spec's and the sweep's together; "
            f"the limit is {MAX_TAGS}",
            loc=["body", "tags"],
        )
    return tags


def check_metric(metric: str, trials: list[expand.Trial]) -> None:
    """422 unless every trial's History has ``metric``."""
    missing = [t for t in trials if metric not in history_names(t.validated)]
    if not missing:
        return
    names = history_names(missing[0].validated)
    which = "the sweep's trials" if len(missing) == len(trials) else _named(missing[0])
    hint = (
        "it needs validation data: set fit.validation_split > 0 or validation_dataset_id"
        if metric.startswith("val_") and metric[4:] in names
        else f"expected one of: {', '.join(names)}"
    )
    raise InvalidSpec(
        f"metric {metric!r} is not in the History of {which}; {hint}",
        loc=["body", "metric", "name"],
    )


def _named(trial: expand.Trial) -> str:
    return "the trial with " + ", ".join(f"{p}={v!r}" for p, v in trial.params.items())
