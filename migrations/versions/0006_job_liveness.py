"""job liveness and cancel: jobs.last_seen_ms, jobs.cancel_ms, an index on jobs.status

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (no batch rebuild of `jobs`: on SQLite that would drop and recreate
    # the table the lines' foreign keys point at).
    op.add_column("jobs", sa.Column("last_seen_ms", sa.BigInteger(), nullable=True))
    op.add_column("jobs", sa.Column("cancel_ms", sa.BigInteger(), nullable=True))
    op.create_index("ix_jobs_status", "jobs", ["status"])
    # A running job was last heard from when its last line arrived (or when it was created);
    # the job timeout starts from there, not from the upgrade.
    op.execute(
        "UPDATE jobs SET last_seen_ms = COALESCE(finished_ms, (SELECT lines.ts_ms FROM lines"
        " WHERE lines.job_id = jobs.id ORDER BY lines.no DESC LIMIT 1), created_ms)"
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_status", table_name="jobs")
    op.drop_column("jobs", "cancel_ms")
    op.drop_column("jobs", "last_seen_ms")
