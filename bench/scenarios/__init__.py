"""The scenarios, one module each: selfcheck, fanout, catchup, ingest, idle, h2.

Each module's `run(ctx, ...)` drives a fresh server (or, for selfcheck, a trivial one) and returns
a `context.Result`: rows for the final table plus the raw numbers for the JSON file.
`context.py` holds what every scenario gets: the Context (work directory, pinning, profiling, the
server under test and what differs for a peer), the Result, CPU columns, the py-spy window and
the helper processes' start.
"""
