"""tags

A job's tags (``jobs.tags``, as given) and one row per tag in ``job_tags``
(indexed by tag) for ``GET /v1/jobs?tag=``; a sweep's own tags
(``sweeps.tags``). Rows that exist have no tags.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NO_TAGS = sa.text("'[]'")


def upgrade() -> None:
    op.create_table(
        "job_tags",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_tags_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "tag", name=op.f("pk_job_tags")),
    )
    op.create_index("ix_job_tags_tag_job_id", "job_tags", ["tag", "job_id"], unique=False)
    if op.get_context().dialect.name == "sqlite":
        # In place, as 0002 and 0003 do: batch mode would rebuild ``jobs`` and cascade.
        op.execute("ALTER TABLE jobs ADD COLUMN tags JSON NOT NULL DEFAULT '[]'")
        op.execute("ALTER TABLE sweeps ADD COLUMN tags JSON NOT NULL DEFAULT '[]'")
    else:
        for table in ("jobs", "sweeps"):
            op.add_column(
                table, sa.Column("tags", sa.JSON(), nullable=False, server_default=NO_TAGS)
            )


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute("ALTER TABLE sweeps DROP COLUMN tags")
        op.execute("ALTER TABLE jobs DROP COLUMN tags")
    else:
        op.drop_column("sweeps", "tags")
        op.drop_column("jobs", "tags")
    op.drop_index("ix_job_tags_tag_job_id", table_name="job_tags")
    op.drop_table("job_tags")
