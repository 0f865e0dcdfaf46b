"""Deleting a job that ended: its rows and its files (``DELETE /v1/jobs/{id}``).

- Only a terminal job (succeeded, failed, cancelled): a queued or running one
  is a 409 that says to cancel it first. A terminal state is final, so the
  check cannot go stale; the DELETE still names the terminal states (one
  guarded statement, "nothing matched" is an error).
- A sweep's trial only once its sweep ended (every trial terminal): the
  sweep's early termination compares a running trial with its siblings, and
  that ranking must not lose a trial while it is being made. Afterwards the
  trial goes like any job: the sweep's counts, ranking and best trial are
  read from the trials that remain.
- The rows: the job's and every row that references it (History, events,
  execution log, tags, its sweep-trial row), in the caller's transaction.
  The ``Idempotency-Key`` it was made with is free again.
- The files (``store.keys.job``: checkpoints and models) once the
  transaction committed (``engine.after_commit``): a crash leaves orphan
  files at worst, which the collector takes (``store/gc.py``), never a row
  without its model. So are files that a superseded attempt writes after the
  delete.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Column, Table, delete, select
from sqlalchemy.orm import Session

from fitq.service.db.engine import after_commit, rowcount
from fitq.service.db.models import TERMINAL_STATUSES, Base, Job, SweepTrial
from fitq.service.errors import Conflict
from fitq.service.jobs import read
from fitq.service.store import ArtifactStore, keys

log = logging.getLogger("fitq.jobs")


def delete_job(session: Session, store: ArtifactStore, job: Job) -> None:
    """Delete ``job`` (the caller's, loaded through ``read.get``), its rows and,
    after the commit, its files; 409 unless it and its sweep ended."""
    if job.status not in TERMINAL_STATUSES:
        raise Conflict(
            f"job {job.id!r} is {job.status}; cancel it first "
            f"(POST /v1/jobs/{job.id}/cancel), then delete it once it has ended"
        )
    if job.sweep_id is not None:
        _check_sweep_ended(session, job)
    job_id, owner_id = job.id, job.owner_id
    for table in _referencing_tables():
        session.execute(delete(table).where(_job_column(table) == job_id))
    deleted = session.execute(
        delete(Job).where(
            Job.id == job_id, Job.owner_id == owner_id, Job.status.in_(TERMINAL_STATUSES)
        )
    )
    if rowcount(deleted) != 1:  # deleted meanwhile by another request
        raise read.not_found(job_id)
    session.expunge(job)
    after_commit(session, lambda: _delete_files(store, job_id))
    log.info("job deleted", extra={"action": "delete", "job_id": job_id})


def _check_sweep_ended(session: Session, job: Job) -> None:
    running = session.execute(
        select(Job.id, Job.status)
        .join(SweepTrial, SweepTrial.job_id == Job.id)
        .where(SweepTrial.sweep_id == job.sweep_id, Job.status.not_in(TERMINAL_STATUSES))
        .limit(1)
    ).first()
    if running is not None:
        raise Conflict(
            f"job {job.id!r} is a trial of sweep {job.sweep_id!r}, whose trial "
            f"{running.id!r} is {running.status}; delete it once the sweep has ended "
            f"(or cancel the sweep: POST /v1/sweeps/{job.sweep_id}/cancel)"
        )


def _referencing_tables() -> list[Table]:
    """Every table with a foreign key to ``jobs.id``, children first, read from the
    metadata so that a table added later is not forgotten."""
    return [
        table
        for table in reversed(Base.metadata.sorted_tables)
        if any(fk.column.table.name == Job.__tablename__ for fk in table.foreign_keys)
    ]


def _job_column(table: Table) -> Column[Any]:
    (column,) = [
        fk.parent for fk in table.foreign_keys if fk.column.table.name == Job.__tablename__
    ]
    return column


def _delete_files(store: ArtifactStore, job_id: str) -> None:
    """The job's folder, best effort: what stays is the collector's."""
    try:
        store.delete_prefix(keys.job(job_id))
    except Exception:
        log.warning(
            "job files not deleted", extra={"action": "delete", "job_id": job_id}, exc_info=True
        )
