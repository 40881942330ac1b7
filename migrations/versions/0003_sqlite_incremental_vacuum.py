"""SQLite: incremental auto-vacuum, so a prune gives its space back to the file system

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

auto_vacuum can only change on an empty database or by a VACUUM, which rewrites the whole
file: on a large existing database this migration takes as long as copying it once.
PostgreSQL: nothing to do (autovacuum reuses the space).
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.get_context().autocommit_block():
        op.execute("PRAGMA auto_vacuum = INCREMENTAL")
        op.execute("VACUUM")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.get_context().autocommit_block():
        op.execute("PRAGMA auto_vacuum = NONE")
        op.execute("VACUUM")
