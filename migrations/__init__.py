"""The Alembic migrations, shipped in the wheel as the data package logstream.migrations."""
