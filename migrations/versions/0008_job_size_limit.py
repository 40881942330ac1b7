"""jobs: what the size limit (LOGSTREAM_MAX_JOB_BYTES) needs: stored bytes, head, dropped range

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

Self-contained: four columns on jobs. Jobs that exist at the upgrade count their bytes from
then on (stored_bytes starts at 0).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "jobs", sa.Column("stored_bytes", sa.BigInteger(), nullable=False, server_default="0")
    )
    op.add_column("jobs", sa.Column("head_last", sa.BigInteger(), nullable=True))
    op.add_column("jobs", sa.Column("dropped_first", sa.BigInteger(), nullable=True))
    op.add_column("jobs", sa.Column("dropped_last", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("dropped_last")
        batch.drop_column("dropped_first")
        batch.drop_column("head_last")
        batch.drop_column("stored_bytes")
