"""chunks: finished logs compacted into compressed rows of 1,000 lines

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

Self-contained: only creates the table; existing finished jobs are compacted by the server's
background scan after the upgrade (their lines stay readable from `lines` until then).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chunks",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("first_no", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("last_no", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_chunks_job_id_jobs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "first_no", name="pk_chunks"),
    )


def downgrade() -> None:
    # Lines still in chunks would be lost: the downgrade refuses while any exist (decompress
    # them with a newer version first, or accept the loss by deleting the rows by hand).
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM chunks LIMIT 1")).first() is not None:
        raise RuntimeError("chunks holds compacted lines; downgrading would lose them")
    op.drop_table("chunks")
