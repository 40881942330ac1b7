"""`logstream tail` and `logstream jobs`: read logs and job lists for a terminal.

Following (`tail -f`) reads the SSE stream and remembers the number of the last line printed.
Every (re)connection asks for the lines after it (`Last-Event-ID`), and a line whose number is
not the next one expected is never printed twice; a hole (which the server should never leave)
is filled from the JSON lines API. So a dropped connection or a restarted server costs a pause,
never a duplicate or a missing line. The stream ends with an `end` event (or 204 when there is
nothing left), which gives the job's final status.

With timestamps each line is printed after the time the server stored it (ISO 8601 UTC, as
the API gives it): those come from the JSON lines API, so a follower then uses the stream only
to learn that lines arrived and reads them, stamped, from /lines.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from logstream.runner.client import Client, ClientError
from logstream.runner.delivery import Warn
from logstream.sse import SSEParser, line_text

#: Wait this long before reconnecting if the server named no `retry:` (milliseconds).
DEFAULT_RETRY_MS = 2000
MAX_RETRY_S = 10.0
#: Lines per request to the JSON lines API.
PAGE_LINES = 5000


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


def print_stamped(client: Client, job_id: int, out: IO[bytes], *, after: int) -> None:
    """Print the stored lines after line `after`, each after its timestamp (see stamped)."""
    while True:
        page = client.read_lines(job_id, after, PAGE_LINES)
        for row in page:
            out.write(stamped(row))
            after = int(row["n"])
        out.flush()
        if len(page) < PAGE_LINES:
            return


def stamped(row: dict[str, Any]) -> bytes:
    """A /lines row as printed with --timestamps: `2026-12-01T10:11:12.345Z text`."""
    return f"{row.get('ts')} {row.get('text')}".encode("utf-8", "replace") + b"\n"


def resolve_job(client: Client, job: str) -> int:
    """A JOB argument as a job id: digits are an id, anything else the name of a job, whose
    newest job it means."""
    if job.isascii() and job.isdigit():
        return int(job)
    found = client.list_jobs(1, name=job)
    if not found:
        raise ClientError(f"no job is named {job!r}")
    return int(found[0]["id"])


def line_at(client: Client, job_id: int, since_ms: int) -> int:
    """The number of the last line stored before `since_ms` (0 if none): a binary search on
    the lines' timestamps, which grow with their numbers (one request per step)."""
    count = int(client.get_job(job_id).get("line_count", 0))
    low, high = 1, count + 1  # the first line stored at or after since_ms is in low..high
    while low < high:
        middle = (low + high) // 2
        page = client.read_lines(job_id, middle - 1, 1)
        if not page:  # (gone meanwhile: a pruned job) treat as later
            high = middle
            continue
        if _ms(page[0]["ts"]) >= since_ms:
            high = middle
        else:
            low = middle + 1
    return low - 1


def _ms(ts: str) -> int:
    return round(dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


class Follower:
    """Prints a job's lines after `after` as they arrive, across reconnects, each exactly once;
    with `stamps`, each after its timestamp."""

    def __init__(
        self,
        client: Client,
        job_id: int,
        out: IO[bytes],
        after: int,
        warn: Warn,
        *,
        stamps: bool = False,
    ):
        self.client = client
        self.job_id = job_id
        self.out = out
        self.last = after  # the number of the last line printed (or skipped over on purpose)
        self.warn = warn
        self.stamps = stamps

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
                newest = self.last
                for event in parser.feed(chunk):
                    if event.type == "end":
                        self.out.flush()
                        return self._end(event.data)
                    if event.type == "message" and event.last_event_id.isdigit():
                        if self.stamps:  # read from /lines, with their timestamps, below
                            newest = max(newest, int(event.last_event_id))
                        else:
                            self._line(int(event.last_event_id), line_text(event.data))
                if newest > self.last:
                    self._fill(newest)
                self.out.flush()
        return None

    def _line(self, number: int, text: str) -> None:
        if number <= self.last:
            return  # already printed (a replay after reconnecting)
        if number > self.last + 1:
            self._fill(number - 1)
        self.out.write(text.encode("utf-8", "replace") + b"\n")
        self.last = number

    def _fill(self, upto: int) -> None:
        while self.last < upto:
            page = self.client.read_lines(self.job_id, self.last, min(upto - self.last, PAGE_LINES))
            if not page:
                raise ClientError(f"lines {self.last + 1}-{upto} of job {self.job_id} are missing")
            for row in page:
                if self.last < int(row["n"]) <= upto:
                    if self.stamps:
                        self.out.write(stamped(row))
                    else:
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


def watch_jobs(
    fetch: Callable[[], list[dict[str, Any]]],
    show: Callable[[str], None],
    warn: Warn,
    *,
    interval: float,
    screen: bool,
    title: str,
) -> None:
    """List the jobs `fetch` returns every `interval` seconds until Ctrl-C: on a terminal
    (`screen`) redrawn in place like watch(1), otherwise printed again only when it changed.
    A server that is away is said once and retried."""
    shown: Sequence[str] | None = None
    away = False
    try:
        while True:
            try:
                rows = format_jobs(fetch())
            except ClientError as error:
                if not error.retryable:
                    raise
                if not away:
                    warn(f"{error}; retrying every {interval:g} s")
                away = True
            else:
                away = False
                if screen:
                    clock = time.strftime("%H:%M:%S")
                    show("\x1b[H\x1b[2J" + f"Every {interval:g}s: {title}  {clock}\n")
                    show("\n".join(rows))
                elif rows != shown:
                    show(("\n" if shown is not None else "") + "\n".join(rows))
                shown = rows
            time.sleep(interval)
    except KeyboardInterrupt:
        return
