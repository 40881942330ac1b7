"""What the server and the runner agree on: final statuses, conflict reasons, the default URL.

Imports nothing, so both sides (and the CLI, before it knows which side it is) can use it.
"""

from __future__ import annotations

from typing import Final

# The statuses a runner may finish a job with (POST /api/jobs/{id}/finish, `push --finish`).
STATUSES_FINISH: Final = ("succeeded", "failed", "canceled")
# The server's own ending: no append and no keepalive for LOGSTREAM_JOB_TIMEOUT seconds.
STATUS_LOST: Final = "lost"
# The statuses a job may end with; a job without one of these is still running. Only
# "succeeded" is a success (`logstream tail -f` exits 0 for it alone).
STATUSES_FINAL: Final = (*STATUSES_FINISH, STATUS_LOST)

# What an append's answer says of the job (its `job_status` and `Job-Status` header, as
# GitLab's runner API does): still running, or asked to stop (a cancel was requested).
JOB_RUNNING: Final = "running"
JOB_CANCELING: Final = "canceling"

# The `reason` of a 409 answer to an append or a finish.
REASON_GAP: Final = "gap"  # `first` is past the stored end: lines are missing before it
REASON_MISMATCH: Final = "mismatch"  # an overlapping line differs from the stored one
REASON_FINISHED: Final = "finished"  # the job has ended and takes no more lines
REASON_LINE_COUNT: Final = "line_count"  # a finish whose line_count is not what is stored

# Where the CLI looks for a server when neither --server nor LOGSTREAM_SERVER says.
DEFAULT_SERVER: Final = "http://127.0.0.1:8000"
