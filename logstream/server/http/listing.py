"""The job list's filters: `GET /api/jobs` query parameters into a `queries.JobFilter`.

Framework-free (it takes the query's (name, value) pairs), like core.py. Every filter given
must hold: `status` (repeatable or comma-separated: any of them), `name` (exact),
`name_prefix`, and `meta.KEY=VALUE` (the job's meta has KEY with this string value).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from logstream.protocol import STATUSES_FINAL
from logstream.server.errors import BadRequest
from logstream.server.store.queries import JobFilter

STATUSES = ("running", *STATUSES_FINAL)
META_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_META_FILTERS = 8
MAX_VALUE = 1000


def parse_job_filter(args: Iterable[tuple[str, str]]) -> JobFilter:
    """The filter that the query's parameters describe (other parameters are left alone);
    400 naming the field for an unknown status, a bad meta key or an overlong value."""
    statuses: list[str] = []
    name: str | None = None
    prefix: str | None = None
    meta: list[tuple[str, str]] = []
    for field, value in args:
        if field == "status":
            for status in value.split(","):
                status = status.strip()
                if status and status not in STATUSES:
                    raise BadRequest(
                        f"status must be one of {', '.join(STATUSES)}, not {status[:40]!r}",
                        field="status",
                    )
                if status and status not in statuses:
                    statuses.append(status)
        elif field in ("name", "name_prefix"):
            if len(value) > MAX_VALUE:
                raise BadRequest(f"{field} must be at most {MAX_VALUE} characters", field=field)
            if value and field == "name":
                name = value
            elif value:
                prefix = value
        elif field.startswith("meta."):
            key = field[len("meta.") :]
            if not META_KEY.fullmatch(key):
                raise BadRequest(
                    "a meta filter is meta.KEY=VALUE with KEY of 1 to 64 letters, digits,"
                    " '_', '.' or '-'",
                    field=field[:80],
                )
            if len(value) > MAX_VALUE:
                raise BadRequest(f"{field} must be at most {MAX_VALUE} characters", field=field)
            meta.append((key, value))
            if len(meta) > MAX_META_FILTERS:
                raise BadRequest(f"at most {MAX_META_FILTERS} meta filters at once", field=field)
    return JobFilter(tuple(statuses), name, prefix, tuple(meta))
