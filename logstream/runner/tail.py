"""`logstream tail` and `logstream jobs`: read logs and job lists for a terminal.

Following (`tail -f`) reads the SSE stream and remembers the number of the last line printed.
Every (re)connection asks for the lines after it (`Last-Event-ID`), and a line whose number is
not the next one expected is never printed twice; a hole (which the server should never leave)
is filled from the JSON lines API. So a dropped connection or a restarted server costs a pause,
never a duplicate or a missing line. The stream ends with an `end` event (or 204 when there is
nothing left), which gives the job's final status.
"""

from __future__ import annotations

import json
import time
from typing import IO, Any

from logstream.runner.client import Client, ClientError
from logstream.runner.delivery import Warn
from logstream.sse import SSEParser, line_text

#: Wait this long before reconnecting if the server named no `retry:` (milliseconds).
DEFAULT_RETRY_MS = 2000
MAX_RETRY_S = 10.0


def print_log(
    client: Client, job_id: int, out: IO[bytes], *, after: int | None, tail: int | None
) -> None:
    """Print the log as it is now (raw text), from after line `after` or its last `tail` lines."""
    params: dict[str, Any] = {"format": "text"}
    if after is not None:
        params["after"] = after
    elif tail is not None:
        params["tail"] = tail
    with client.open_log(job_id, sse=False, params=params) as response:
        for chunk in response.iter_bytes():
            out.write(chunk)
        out.flush()


class Follower:
    """Prints a job's lines after `after` as they arrive, across reconnects, each exactly once."""

    def __init__(self, client: Client, job_id: int, out: IO[bytes], after: int, warn: Warn):
        self.client = client
        self.job_id = job_id
        self.out = out
        self.last = after  # the number of the last line printed (or skipped over on purpose)
        self.warn = warn

    def run(self, give_up: float) -> dict[str, Any]:
        """Follow until the job ends; return its end (status, exit_code, line_count)."""
        retry_ms = DEFAULT_RETRY_MS
        outage: float | None = None  # when the current run of failed connections began
        attempt = 0
        while True:
            parser = SSEParser()
            try:
                end = self._connect(parser)
                if end is not None:
                    return end
                problem = "the stream ended before the job did"
            except ClientError as error:
                if not error.retryable:
                    raise
                problem = str(error)
            now = time.monotonic()
            if parser.retry is not None:
                retry_ms = parser.retry
            if parser.retry is not None or outage is None:
                # This connection had worked (the server always opens with `retry:`): a new outage.
                outage, attempt = now, 0
                self.warn(f"{problem}; reconnecting after line {self.last}")
            if now - outage > give_up:
                raise ClientError(f"{problem}; gave up after {give_up:g} s")
            delay = min(retry_ms / 1000 * 1.5**attempt, MAX_RETRY_S)
            attempt += 1
            time.sleep(max(0.0, min(delay, outage + give_up - now)))

    def _connect(self, parser: SSEParser) -> dict[str, Any] | None:
        with self.client.open_log(self.job_id, sse=True, last_event_id=self.last) as response:
            if response.status_code == 204:
                return self._end_from_job()
            kind = response.headers.get("content-type", "")
            if not kind.startswith("text/event-stream"):
                raise ClientError(
                    f"{self.client.server} did not answer with an event stream ({kind or 'none'})"
                )
            for chunk in response.iter_bytes():
                for event in parser.feed(chunk):
                    if event.type == "end":
                        self.out.flush()
                        return self._end(event.data)
                    if event.type == "message":
                        self._line(event.last_event_id, line_text(event.data))
                self.out.flush()
        return None

    def _line(self, event_id: str, text: str) -> None:
        if not event_id.isdigit():
            return  # not one of our line events
        number = int(event_id)
        if number <= self.last:
            return  # already printed (a replay after reconnecting)
        if number > self.last + 1:
            self._fill(number - 1)
        self.out.write(text.encode("utf-8", "replace") + b"\n")
        self.last = number

    def _fill(self, upto: int) -> None:
        while self.last < upto:
            page = self.client.read_lines(self.job_id, self.last, min(upto - self.last, 1000))
            if not page:
                raise ClientError(f"lines {self.last + 1}-{upto} of job {self.job_id} are missing")
            for row in page:
                if self.last < int(row["n"]) <= upto:
                    self.out.write(str(row["text"]).encode("utf-8", "replace") + b"\n")
                    self.last = int(row["n"])

    def _end(self, data: str) -> dict[str, Any]:
        try:
            end = json.loads(data)
        except ValueError:
            end = None
        if not isinstance(end, dict):
            raise ClientError(f"the server sent an end event that is not JSON: {data[:80]!r}")
        count = end.get("line_count")
        if isinstance(count, int) and count > self.last:
            self._fill(count)
            self.out.flush()
        return end

    def _end_from_job(self) -> dict[str, Any]:
        job = self.client.get_job(self.job_id)
        return {k: job.get(k) for k in ("status", "exit_code", "line_count")}


def start_after(client: Client, job_id: int, *, first: int | None, tail: int | None) -> int:
    """The number of the line to start after: `first - 1`, or `tail` before the current end."""
    job = client.get_job(job_id)
    if first is not None:
        return max(0, first - 1)
    if tail is not None:
        return max(0, int(job.get("line_count", 0)) - tail)
    return 0


def format_duration(seconds: float | None) -> str:
    """12.3s, 4m05s, 2h03m; '-' when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_jobs(jobs: list[dict[str, Any]]) -> list[str]:
    """A table of jobs: id, name, status, lines, duration."""
    rows = [("ID", "NAME", "STATUS", "LINES", "DURATION")]
    for job in jobs:
        name = str(job.get("name", ""))
        rows.append(
            (
                str(job.get("id", "")),
                name if len(name) <= 40 else name[:39] + "\u2026",
                str(job.get("status", "")),
                str(job.get("line_count", "")),
                format_duration(job.get("duration")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    out = []
    for row in rows:
        cells = [
            row[0].rjust(widths[0]),
            row[1].ljust(widths[1]),
            row[2].ljust(widths[2]),
            row[3].rjust(widths[3]),
            row[4].rjust(widths[4]),
        ]
        out.append("  ".join(cells).rstrip())
    return out
