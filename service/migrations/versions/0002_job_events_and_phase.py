"""job events and phase

A ``job_events`` table (status changes, phase changes and finished epochs,
written in the transaction of the change; its id is the Server-Sent Events
id) and the running job's ``phase``. Jobs that exist already get their
status history back-filled from their timestamps, so that every job's event
stream ends with its terminal status.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PHASE_CHECK = "phase IS NULL OR phase IN ('loading_data', 'training', 'evaluating', 'saving')"


def upgrade() -> None:
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('status', 'phase', 'epoch')", name=op.f("ck_job_events_kind")),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_events_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_events")),
    )
    op.create_index("ix_job_events_job_id_id", "job_events", ["job_id", "id"], unique=False)

    if op.get_context().dialect.name == "sqlite":
        # Batch mode would rebuild ``jobs`` (drop + rename), and with foreign
        # keys on, dropping it cascades into job_epochs: add the column in place.
        op.execute(
            "ALTER TABLE jobs ADD COLUMN phase VARCHAR(16) "
            f"CONSTRAINT ck_jobs_phase CHECK ({PHASE_CHECK})"
        )
    else:
        op.add_column("jobs", sa.Column("phase", sa.String(length=16), nullable=True))
        op.create_check_constraint(op.f("ck_jobs_phase"), "jobs", PHASE_CHECK)

    _backfill_status_events()


def _backfill_status_events() -> None:
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.String),
        sa.column("status", sa.String),
        sa.column("attempt", sa.Integer),
        sa.column("error", sa.Text),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("started_at", sa.DateTime(timezone=True)),
        sa.column("finished_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    events = sa.table(
        "job_events",
        sa.column("job_id", sa.String),
        sa.column("kind", sa.String),
        sa.column("data", sa.JSON),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    rows: list[dict[str, object]] = []
    for job in op.get_bind().execute(sa.select(jobs).order_by(jobs.c.created_at, jobs.c.id)):
        rows.append(_status(job.id, "queued", 0, job.created_at))
        if job.started_at is not None and job.status != "queued":
            rows.append(_status(job.id, "running", max(job.attempt, 1), job.started_at))
        if job.status not in ("queued", "running"):
            at = job.finished_at or job.updated_at
            row = _status(job.id, job.status, job.attempt, at)
            if job.error:
                row["data"]["error"] = job.error  # type: ignore[index]
            rows.append(row)
    if rows:
        op.bulk_insert(events, rows)


def _status(job_id: str, status: str, attempt: int, at: object) -> dict[str, object]:
    return {
        "job_id": job_id,
        "kind": "status",
        "data": {"status": status, "attempt": attempt},
        "created_at": at,
    }


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute("ALTER TABLE jobs DROP COLUMN phase")
    else:
        op.drop_constraint(op.f("ck_jobs_phase"), "jobs", type_="check")
        op.drop_column("jobs", "phase")
    op.drop_index("ix_job_events_job_id_id", table_name="job_events")
    op.drop_table("job_events")
