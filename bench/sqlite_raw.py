"""Helper process: the raw SQLite insert limit, for comparison with the server's ingest.

`python -m bench.sqlite_raw <db path> <seconds per mode>` (run pinned to the server's core):
Python's sqlite3, WAL, synchronous=NORMAL, the table
`lines(job_id INTEGER, no INTEGER, ts_ms INTEGER, text TEXT, PRIMARY KEY(job_id, no))
WITHOUT ROWID`, 80-byte rows; inserts for a fixed time in transactions of 1,000 rows and of one
row each. Prints one JSON line: rows/s and CPU seconds per mode.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time

from .common import SERVER_CORE, core_busy_seconds, line_text, self_cpu_seconds


def insert_for(
    conn: sqlite3.Connection, job_id: int, rows_per_tx: int, seconds: float
) -> dict[str, float]:
    no = 0
    rows = 0
    txs = 0
    cpu0 = self_cpu_seconds()
    core0 = core_busy_seconds(SERVER_CORE)
    started = time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline:
        ts = time.time_ns() // 1_000_000
        batch = [
            (job_id, no + i + 1, ts, line_text(ts, no + i + 1).decode()) for i in range(rows_per_tx)
        ]
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO lines (job_id, no, ts_ms, text) VALUES (?, ?, ?, ?)", batch)
        conn.execute("COMMIT")
        no += rows_per_tx
        rows += rows_per_tx
        txs += 1
    elapsed = time.monotonic() - started
    cpu = self_cpu_seconds() - cpu0
    return {
        "rows_per_tx": rows_per_tx,
        "rows": rows,
        "transactions": txs,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(rows / elapsed, 1),
        "cpu_s": round(cpu, 3),
        # CPU time other processes took on this core meanwhile (we run pinned to it).
        "other_core0_s": round(max(0.0, core_busy_seconds(SERVER_CORE) - core0 - cpu), 3),
    }


def main() -> None:
    path, seconds = sys.argv[1], float(sys.argv[2])
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE lines (job_id INTEGER, no INTEGER, ts_ms INTEGER, text TEXT,"
        " PRIMARY KEY (job_id, no)) WITHOUT ROWID"
    )
    results = {
        "batched": insert_for(conn, 1, 1000, seconds),
        "single": insert_for(conn, 2, 1, seconds),
        "sqlite_version": sqlite3.sqlite_version,
    }
    conn.close()
    sys.stdout.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
