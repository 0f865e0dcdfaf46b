"""packs and sweeps

The pack a job may train in (``pack_key``, computed at submit) and the one it
trains in (``pack_id``, ``pack_size``); sweeps and their trials.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PACK_SIZE_CHECK = "pack_size IS NULL OR pack_size >= 1"


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("metric", sa.String(length=100), nullable=False),
        sa.Column("goal", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("goal IN ('minimize', 'maximize')", name=op.f("ck_sweeps_goal")),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["api_keys.id"], name=op.f("fk_sweeps_owner_id_api_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweeps")),
    )
    op.create_index(op.f("ix_sweeps_owner_id"), "sweeps", ["owner_id"], unique=False)
    op.create_table(
        "sweep_trials",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("sweep_id", sa.String(length=32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("pruned", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_sweep_trials_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["sweep_id"],
            ["sweeps.id"],
            name=op.f("fk_sweep_trials_sweep_id_sweeps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_sweep_trials")),
    )
    op.create_index(op.f("ix_sweep_trials_sweep_id"), "sweep_trials", ["sweep_id"], unique=False)

    if op.get_context().dialect.name == "sqlite":
        # In place, as 0002 does: batch mode would rebuild ``jobs`` and cascade.
        op.execute("ALTER TABLE jobs ADD COLUMN pack_key VARCHAR(64)")
        op.execute("ALTER TABLE jobs ADD COLUMN pack_id VARCHAR(32)")
        op.execute(
            "ALTER TABLE jobs ADD COLUMN pack_size INTEGER "
            f"CONSTRAINT ck_jobs_pack_size CHECK ({PACK_SIZE_CHECK})"
        )
        # No REFERENCES on SQLite: a column with one cannot be dropped in place
        # (downgrade), and sweeps delete their trials' jobs themselves.
        op.execute("ALTER TABLE jobs ADD COLUMN sweep_id VARCHAR(32)")
    else:
        op.add_column("jobs", sa.Column("pack_key", sa.String(length=64), nullable=True))
        op.add_column("jobs", sa.Column("pack_id", sa.String(length=32), nullable=True))
        op.add_column("jobs", sa.Column("pack_size", sa.Integer(), nullable=True))
        op.add_column("jobs", sa.Column("sweep_id", sa.String(length=32), nullable=True))
        op.create_check_constraint(op.f("ck_jobs_pack_size"), "jobs", PACK_SIZE_CHECK)
        op.create_foreign_key(
            op.f("fk_jobs_sweep_id_sweeps"),
            "jobs",
            "sweeps",
            ["sweep_id"],
            ["id"],
            ondelete="CASCADE",
        )
    op.create_index(op.f("ix_jobs_sweep_id"), "jobs", ["sweep_id"], unique=False)
    op.create_index(
        "ix_jobs_pack_claim", "jobs", ["pack_key", "status", "priority", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_pack_claim", table_name="jobs")
    op.drop_index(op.f("ix_jobs_sweep_id"), table_name="jobs")
    if op.get_context().dialect.name == "sqlite":
        for column in ("sweep_id", "pack_size", "pack_id", "pack_key"):
            op.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
    else:
        op.drop_constraint(op.f("fk_jobs_sweep_id_sweeps"), "jobs", type_="foreignkey")
        op.drop_constraint(op.f("ck_jobs_pack_size"), "jobs", type_="check")
        for column in ("sweep_id", "pack_size", "pack_id", "pack_key"):
            op.drop_column("jobs", column)
    op.drop_index(op.f("ix_sweep_trials_sweep_id"), table_name="sweep_trials")
    op.drop_table("sweep_trials")
    op.drop_index(op.f("ix_sweeps_owner_id"), table_name="sweeps")
    op.drop_table("sweeps")
