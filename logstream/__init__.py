"""logstream: build logs as numbered lines, stored durably and tailed live over SSE."""

__version__ = "0.1.0"
