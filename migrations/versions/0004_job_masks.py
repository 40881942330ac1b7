"""job masks: sealed secret values of running jobs, and each job's mask version

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (with a default) on both backends: no copy of the jobs table.
    op.add_column(
        "jobs", sa.Column("mask_version", sa.BigInteger(), nullable=False, server_default="0")
    )
    op.add_column("jobs", sa.Column("mask_block", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "job_masks",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("key", sa.String(8), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_job_masks_job_id_jobs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "seq", "key", name="pk_job_masks"),
    )


def downgrade() -> None:
    op.drop_table("job_masks")
    with op.batch_alter_table("jobs") as batch:  # SQLite before 3.35 cannot DROP COLUMN
        batch.drop_column("mask_block")
        batch.drop_column("mask_version")
