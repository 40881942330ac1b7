"""What the server and the runner agree on: final statuses, conflict reasons, the default URL.

Imports nothing, so both sides (and the CLI, before it knows which side it is) can use it.
"""

from __future__ import annotations

from typing import Final

# The statuses a job may end with; a job without one of these is still running.
STATUSES_FINAL: Final = ("succeeded", "failed", "canceled")

# The `reason` of a 409 answer to an append or a finish.
REASON_GAP: Final = "gap"  # `first` is past the stored end: lines are missing before it
REASON_MISMATCH: Final = "mismatch"  # an overlapping line differs from the stored one
REASON_FINISHED: Final = "finished"  # the job has ended and takes no more lines
REASON_LINE_COUNT: Final = "line_count"  # a finish whose line_count is not what is stored

# Where the CLI looks for a server when neither --server nor LOGSTREAM_SERVER says.
DEFAULT_SERVER: Final = "http://127.0.0.1:8000"
