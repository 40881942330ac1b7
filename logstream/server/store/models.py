"""SQLAlchemy tables: what the store queries and what Alembic migrates."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Times are integer milliseconds since the epoch (UTC): same on both backends, cheap to compare.
jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("meta", Text, nullable=False, server_default="{}"),
    Column("status", String(16), nullable=False, server_default="running"),
    Column("exit_code", Integer, nullable=True),
    Column("line_count", BigInteger, nullable=False, server_default="0"),
    Column("token_hash", String(64), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("finished_ms", BigInteger, nullable=True),
    # Masking (server/masks.py): bumped by every change of the job's masks, checked under the
    # job's lock by each append; mask_block is 1 inside a multi-line private-key block.
    Column("mask_version", BigInteger, nullable=False, server_default="0"),
    Column("mask_block", Integer, nullable=False, server_default="0"),
    # The size limit (LOGSTREAM_MAX_JOB_BYTES, server/store/limits.py): bytes of the lines
    # stored (UTF-8 and a LF each), the last line of the kept head once known, and the range of
    # dropped lines (its marker line is stored at dropped_last).
    Column("stored_bytes", BigInteger, nullable=False, server_default="0"),
    Column("head_last", BigInteger, nullable=True),
    Column("dropped_first", BigInteger, nullable=True),
    Column("dropped_last", BigInteger, nullable=True),
    # When the runner was last heard from (an append or a keepalive): set by the statement
    # that moves line_count, so it costs no extra write. Not indexed, so updating it never
    # touches an index (and stays a HOT update on PostgreSQL).
    Column("last_seen_ms", BigInteger, nullable=True),
    # When a cancel was requested (the job keeps running until its runner finishes it).
    Column("cancel_ms", BigInteger, nullable=True),
    # The job list filtered by name or status, newest first (migration 0009): a walk down one
    # of these stops after `limit` rows instead of scanning every job. (status, id) also
    # serves the sweep that looks for stale jobs among the running ones (it replaced 0006's
    # ix_jobs_status); status changes only at the end.
    Index("ix_jobs_name_id", "name", "id"),
    Index("ix_jobs_status_id", "status", "id"),
)

# (job_id, no) is the primary key; on SQLite the table is WITHOUT ROWID, so each job's lines
# sit together in key order and a page of replay is one range scan.
lines = Table(
    "lines",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("no", BigInteger, primary_key=True, autoincrement=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("text", Text, nullable=False),
    sqlite_with_rowid=False,
)

# A finished job's lines, compacted (server/compaction.py): each row holds the consecutive lines
# first_no..last_no, their timestamps and texts, compressed (store/chunks.py has the format).
# A line is either here or in `lines`, never both: a compaction step moves one chunk's lines in
# one transaction. Rows are a few kilobytes each, so this table keeps its rowid (SQLite
# recommends WITHOUT ROWID only for small rows); the primary key is still (job_id, first_no).
chunks = Table(
    "chunks",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("first_no", BigInteger, primary_key=True, autoincrement=False),
    Column("last_no", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

# Job lifecycle (created, finished) in order: the resumable ids of the /api/events feed.
job_events = Table(
    "job_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

# The secret values a running job masks, sealed (server/masks.py): rows seq >= 0 hold the values
# encrypted with the job's data key; rows seq -1 hold that key, encrypted with a key derived
# from a token the server does not store (key "job": the job's write token, "runner": the
# runner token). Deleted when the job finishes.
job_masks = Table(
    "job_masks",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("key", String(8), primary_key=True),
    Column("sealed", Text, nullable=False),
)

# API tokens (`logstream token create`): a role each, only the SHA-256 of the token stored. A
# name is unique among the tokens not revoked, so `revoke alice` then `create alice` rotates.
tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=True),
    Column("revoked_ms", BigInteger, nullable=True),
)
Index(
    "ix_tokens_live_name",
    tokens.c.name,
    unique=True,
    sqlite_where=tokens.c.revoked_ms.is_(None),
    postgresql_where=tokens.c.revoked_ms.is_(None),
)

# Browser sessions: a token exchanged at sign-in for a cookie (only its SHA-256 stored). A
# session ends at `expires_ms`, at sign-out (row deleted) or when its token is revoked.
sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cookie_hash", String(64), nullable=False, unique=True),
    Column(
        "token_id",
        Integer,
        ForeignKey("tokens.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
)
