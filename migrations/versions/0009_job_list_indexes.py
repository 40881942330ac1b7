"""indexes for the filtered job list: (name, id) and (status, id), the latter instead of
0006's (status)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

`GET /api/jobs?name=...` and `?status=...` list newest first: with these the database walks
the matching jobs in id order and stops at the page's limit. (status, id) starts with status,
so the lost sweep's look for running jobs uses it as it used ix_jobs_status, which goes.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_name_id", "jobs", ["name", "id"])
    op.create_index("ix_jobs_status_id", "jobs", ["status", "id"])
    op.drop_index("ix_jobs_status", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.drop_index("ix_jobs_status_id", table_name="jobs")
    op.drop_index("ix_jobs_name_id", table_name="jobs")
