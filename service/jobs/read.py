"""The one read model of a job: the owner check, and the shape a reader sees.

A job's public shape (``JobPublic``: its row, its status history, its progress
and ETA) is built by :func:`public` and nowhere else. Each reader fetches what
that needs in its own way and hands it over:

- the routes that answer a job or a page of jobs (submit, list, cancel): ORM
  rows (the list's from ``listing.py``) and :func:`publics`, two statements
  for a whole page;
- the hot read ``GET /v1/jobs/{id}`` (``api/reads.py``): Core statements built
  from :func:`owned` and the timing columns here;
- the event streams (``api/sse.py``): :func:`progress`, a projection of the shape.

The owner check is one SQL condition (:func:`owned`) and one error
(:func:`not_found`): another key's job is "not found", word for word, on every
path. The epoch History (``GET /v1/jobs/{id}/metrics``) is built by :func:`history`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from fitq.service.api.schemas import (
    EpochMetrics,
    History,
    JobPublic,
    PackPublic,
    Progress,
    StatusChange,
)
from fitq.service.db.models import EVENT_STATUS, RUNNING, Job, JobEpoch, JobEvent
from fitq.service.errors import NotFound

# -- the owner check ------------------------------------------------------------


def owned_by(owner_id: Any) -> ColumnElement[bool]:
    """The jobs of ``owner_id`` (a value, or a column to join on)."""
    return Job.owner_id == owner_id


def owned(job_id: Any, owner_id: Any) -> ColumnElement[bool]:
    """The job ``job_id``, if ``owner_id`` owns it."""
    return and_(Job.id == job_id, owned_by(owner_id))


def not_found(job_id: str) -> NotFound:
    return NotFound(f"no job with id {job_id!r}")


def get(session: Session, owner_id: str, job_id: str) -> Job:
    """The job ``job_id`` of ``owner_id``; another owner's job is "not found", word for word."""
    job = session.scalar(select(Job).where(owned(job_id, owner_id)))
    if job is None:
        raise not_found(job_id)
    return job


# -- the shape ----------------------------------------------------------------------

MEAN_EPOCH_SECONDS = (
    select(func.avg(JobEpoch.seconds))
    .where(JobEpoch.job_id == Job.id)
    .scalar_subquery()
    .label("mean_epoch_seconds")
)
"""A column of a statement over jobs: the mean time of the job's finished epochs."""
EPOCHS_DONE = (
    select(func.max(JobEpoch.epoch))
    .where(JobEpoch.job_id == Job.id)
    .scalar_subquery()
    .label("epochs_done")
)
"""A column of a statement over jobs: the last finished epoch (null before the first)."""


@dataclass(frozen=True)
class Timing:
    """What the ETA comes from: the mean measured epoch time (None until an
    epoch has finished) and the number of finished epochs."""

    mean_epoch_seconds: float | None = None
    epochs_done: int = 0

    @classmethod
    def of(cls, mean_epoch_seconds: Any, epochs_done: Any) -> Timing:
        """From the two columns above, as a database returns them."""
        mean = None if mean_epoch_seconds is None else float(mean_epoch_seconds)
        return cls(mean, int(epochs_done or 0))


StatusEvent = tuple[dict[str, Any], datetime]
"""A status event's data and time: one entry of the status history."""


def public(job: Job, timing: Timing, status_history: Iterable[StatusEvent] = ()) -> JobPublic:
    """The job as the API shows it (``job`` may be an ORM row or a Core row
    with the same columns)."""
    running = job.status == RUNNING
    return JobPublic(
        id=job.id,
        name=job.name,
        status=job.status,  # type: ignore[arg-type]
        priority=job.priority,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        cancel_requested=job.cancel_requested,
        progress=Progress(epoch=job.epoch, epochs=job.epochs, step=job.step, steps=job.steps),
        phase=job.phase if running else None,  # type: ignore[arg-type]
        eta_seconds=eta_seconds(job, timing),
        status_history=[
            StatusChange.model_validate({**data, "at": at}) for data, at in status_history
        ],
        metrics=job.metrics,
        test_metrics=job.test_metrics,
        error=job.error,
        worker_id=job.worker_id,
        device=job.device,
        dataset_id=job.dataset_id,
        validation_dataset_id=job.validation_dataset_id,
        test_dataset_id=job.test_dataset_id,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        sweep_id=job.sweep_id,
        tags=list(job.tags or []),
        pack=pack(job),
        spec=job.spec,
    )


def pack(job: Job) -> PackPublic | None:
    """The job's pack, shown while (or after) it trains with at least one other job."""
    if job.pack_id is None or job.pack_size is None or job.pack_size < 2:
        return None
    return PackPublic(id=job.pack_id, size=job.pack_size)


def eta_seconds(job: Job, timing: Timing) -> float | None:
    """Seconds until the last epoch ends, at the mean measured epoch time: the
    epochs not started plus what is left of the one in progress. None unless
    the job runs and an epoch has finished (early stopping may end it sooner)."""
    if job.status != RUNNING or timing.mean_epoch_seconds is None:
        return None
    remaining = float(max(job.epochs - timing.epochs_done, 0))
    if remaining and job.epoch == timing.epochs_done + 1 and job.steps:
        remaining -= min(job.step / job.steps, 1.0)
    return round(remaining * timing.mean_epoch_seconds, 1)


def publics(session: Session, jobs: list[Job]) -> list[JobPublic]:
    """Each of ``jobs`` as the API shows it, in order (two statements in all)."""
    ids = [job.id for job in jobs]
    if not ids:
        return []
    histories: dict[str, list[StatusEvent]] = {job_id: [] for job_id in ids}
    for job_id, data, at in session.execute(
        select(JobEvent.job_id, JobEvent.data, JobEvent.created_at)
        .where(JobEvent.job_id.in_(ids), JobEvent.kind == EVENT_STATUS)
        .order_by(JobEvent.id)
    ):
        histories[job_id].append((data, at))
    timings = {
        job_id: Timing.of(mean, done)
        for job_id, mean, done in session.execute(
            select(JobEpoch.job_id, func.avg(JobEpoch.seconds), func.max(JobEpoch.epoch))
            .where(JobEpoch.job_id.in_(ids))
            .group_by(JobEpoch.job_id)
        )
    }
    return [public(job, timings.get(job.id, Timing()), histories[job.id]) for job in jobs]


def progress(job: Job, timing: Timing) -> dict[str, Any]:
    """The snapshot an event stream's ``progress`` event carries: the job's
    public shape, cut to what changes while it runs."""
    shown = public(job, timing)
    return {
        "job_id": shown.id,
        "status": shown.status,
        "phase": shown.phase,
        "attempt": shown.attempt,
        "device": shown.device,
        **shown.progress.model_dump(),
        "eta_seconds": shown.eta_seconds,
    }


def history(epochs: Iterable[Any]) -> History:
    """The epoch-by-epoch History from ``job_epochs`` rows (ORM or Core): each
    epoch's metric values (Keras names), its number, time and throughput."""
    return History(
        epochs=[
            EpochMetrics.model_validate(
                {
                    **row.metrics,
                    "epoch": row.epoch,
                    "seconds": row.seconds,
                    "samples_per_second": row.samples_per_second,
                }
            )
            for row in epochs
        ]
    )
