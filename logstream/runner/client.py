"""The HTTP client for runners and tailers: one method per API call, errors as one-line values.

Imports nothing from the server stack (no Quart, Hypercorn or SQLAlchemy), so a runner machine
needs only httpx and click, and `logstream run` starts fast.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any, Self

import httpx

from logstream import __version__

#: A live stream sends a heartbeat at least every 15 s by default; silence past this is a fault.
STREAM_READ_TIMEOUT = 90.0
#: The most one append carries; far below the server's 8 MiB default body limit.
BATCH_BYTES = 512 * 1024


class ClientError(Exception):
    """A request that failed; `str()` is one line fit for the user."""

    retryable = False


class Unreachable(ClientError):
    """The server could not be reached or dropped the connection: worth retrying."""

    retryable = True


class ServerError(ClientError):
    """The server answered with an error status and (usually) a JSON error body."""

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        """Server-side trouble (5xx, 429, 408) passes; client errors do not."""
        return self.status >= 500 or self.status in (408, 429)


def parse_server_url(url: str) -> str:
    """Check a server URL (http or https, with a host) and return it without a trailing slash."""
    text = url.strip()
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as error:
        raise ClientError(f"invalid server URL {url!r}: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(
            f"invalid server URL {url!r}: expected http://HOST[:PORT] or https://HOST[:PORT]"
        )
    if parts.query or parts.fragment:
        raise ClientError(f"invalid server URL {url!r}: no query or fragment, please")
    del port
    return text.rstrip("/")


def _describe(error: httpx.HTTPError) -> str:
    text = str(error).strip()
    return text if text else type(error).__name__


class Client:
    """A synchronous client for one logstream server. `token` (LOGSTREAM_TOKEN for `tail` and
    `jobs`) goes as `Authorization: Bearer` on every call that names no token of its own: a
    server with LOGSTREAM_AUTH=tokens needs one to read."""

    def __init__(self, server: str, *, timeout: float = 20.0, token: str | None = None) -> None:
        self.server = parse_server_url(server)
        self.token = token or None
        self._http = httpx.Client(
            base_url=self.server,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": f"logstream/{__version__}"},
        )

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def job_url(self, job_id: int) -> str:
        """The job's page in the dashboard (its raw log is at /api/jobs/N/log)."""
        return f"{self.server}/jobs/{job_id}"

    # --- calls ------------------------------------------------------------------------------

    def create_job(
        self, name: str, meta: dict[str, Any], runner_token: str | None = None
    ) -> dict[str, Any]:
        """Create a running job; the answer holds its id and write token."""
        return self._call(
            "POST", "/api/jobs", token=runner_token, body={"name": name, "meta": meta}
        )

    def get_job(self, job_id: int, token: str | None = None) -> dict[str, Any]:
        """One job's JSON (`token`: e.g. the job's own, which may read it)."""
        return self._call("GET", f"/api/jobs/{job_id}", token=token)

    def list_jobs(
        self,
        limit: int = 20,
        *,
        statuses: Sequence[str] = (),
        name: str | None = None,
        meta: Sequence[tuple[str, str]] = (),
    ) -> list[dict[str, Any]]:
        """The most recent jobs, newest first: those with any of `statuses`, named `name` and
        with these (key, string value) pairs in their meta, when given."""
        params: list[tuple[str, str]] = [("limit", str(limit))]
        params += [("status", status) for status in statuses]
        if name is not None:
            params.append(("name", name))
        params += [(f"meta.{key}", value) for key, value in meta]
        answer = self._call("GET", "/api/jobs", params=httpx.QueryParams(list(params)))
        return list(answer.get("jobs", []))

    def read_lines(self, job_id: int, after: int, limit: int) -> list[dict[str, Any]]:
        """A page of stored lines after line `after`."""
        answer = self._call(
            "GET", f"/api/jobs/{job_id}/lines", params={"after": after, "limit": limit}
        )
        return list(answer.get("lines", []))

    def append(
        self,
        job_id: int,
        token: str,
        lines: list[str],
        first: int,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Store lines `first`.. (lines the server already has with the same text are skipped)."""
        return self._call(
            "POST",
            f"/api/jobs/{job_id}/lines",
            token=token,
            body={"lines": lines, "first": first},
            timeout=timeout,
        )

    def keepalive(self, job_id: int, token: str, timeout: float | None = None) -> dict[str, Any]:
        """Tell the server the job's runner is alive while its command is silent (an append of
        no lines); the answer's `job_status` is `canceling` when the job should stop."""
        return self._call(
            "POST",
            f"/api/jobs/{job_id}/lines",
            token=token,
            body={"lines": []},
            timeout=timeout,
        )

    def finish(
        self,
        job_id: int,
        token: str,
        status: str,
        exit_code: int | None,
        line_count: int | None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Give the job its final status (the server checks it holds `line_count` lines)."""
        body: dict[str, Any] = {"status": status, "exit_code": exit_code}
        if line_count is not None:
            body["line_count"] = line_count
        return self._call(
            "POST", f"/api/jobs/{job_id}/finish", token=token, body=body, timeout=timeout
        )

    @contextlib.contextmanager
    def open_log(
        self,
        job_id: int,
        *,
        sse: bool,
        last_event_id: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> Iterator[httpx.Response]:
        """Open the log as a stream (SSE or text); error statuses raise before the body is read."""
        headers = {"Accept": "text/event-stream" if sse else "text/plain"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        timeout = httpx.Timeout(10.0, read=STREAM_READ_TIMEOUT)
        try:
            with self._http.stream(
                "GET",
                f"/api/jobs/{job_id}/log",
                headers=headers,
                params=params,
                timeout=timeout,
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response)
                yield response
        except httpx.HTTPError as error:
            raise Unreachable(f"lost {self.server}: {_describe(error)}") from None

    # --- plumbing ---------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | httpx.QueryParams | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        token = token or self.token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        content = None
        if body is not None:
            content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = httpx.Timeout(max(timeout, 0.1), connect=min(max(timeout, 0.1), 10))
        try:
            response = self._http.request(
                method, path, headers=headers, content=content, params=params, **extra
            )
        except httpx.HTTPError as error:
            raise Unreachable(f"cannot reach {self.server}: {_describe(error)}") from None
        if response.status_code >= 400:
            raise self._error(response)
        try:
            answer = response.json()
        except ValueError:
            raise ClientError(
                f"{self.server} answered {method} {path} with something that is not JSON"
                " (is this a logstream server?)"
            ) from None
        if not isinstance(answer, dict):
            raise ClientError(f"{self.server} answered {method} {path} with unexpected JSON")
        return answer

    def _error(self, response: httpx.Response) -> ServerError:
        body: dict[str, Any] | None = None
        try:
            parsed = response.json()
            if isinstance(parsed, dict):
                body = parsed
        except ValueError:
            pass
        message = body.get("message") if body else None
        if not isinstance(message, str) or not message:
            message = f"{response.status_code} {response.reason_phrase}".strip()
        message = " ".join(message.split())
        return ServerError(response.status_code, f"{message} (HTTP {response.status_code})", body)
