"""Benchmarks that drive a real logstream server with many concurrent clients.

`python -m bench.run` runs them all (see bench/README.md). The server runs pinned to CPU core 0,
the load generator (this process and its helpers) to core 1, and every figure says what it cost
on both sides.
"""
