"""Helpers shared by the API test modules (this module holds no tests itself).

Every network read here runs under `asyncio.timeout`, so a test that waits for something the
server never sends fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import httpx

from support.server import ServerProcess
from support.sse_oracle import Event, SSEParser

SSE = {"Accept": "text/event-stream"}
TIMEOUT = 10.0
ISO_RE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


def client_for(server: ServerProcess, **kwargs: Any) -> httpx.AsyncClient:
    """An HTTP/1.1 client of a test server (kwargs: http2=True, verify=..., ...)."""
    return httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT, **kwargs)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def new_job(
    client: httpx.AsyncClient,
    name: str = "job",
    meta: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name}
    if meta is not None:
        body["meta"] = meta
    async with asyncio.timeout(TIMEOUT):
        r = await client.post("/api/jobs", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def post_lines(
    client: httpx.AsyncClient,
    job: dict[str, Any],
    lines: list[Any],
    first: int | None = None,
    token: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"lines": lines}
    if first is not None:
        body["first"] = first
    async with asyncio.timeout(TIMEOUT):
        return await client.post(
            f"/api/jobs/{job['id']}/lines",
            json=body,
            headers=bearer(token if token is not None else job["token"]),
        )


async def append(
    client: httpx.AsyncClient, job: dict[str, Any], lines: list[Any], first: int | None = None
) -> dict[str, Any]:
    r = await post_lines(client, job, lines, first)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def post_text(
    client: httpx.AsyncClient,
    job: dict[str, Any],
    data: bytes,
    first: int | None = None,
    content_type: str = "text/plain; charset=utf-8",
) -> httpx.Response:
    params = {} if first is None else {"first": str(first)}
    async with asyncio.timeout(TIMEOUT):
        return await client.post(
            f"/api/jobs/{job['id']}/lines",
            content=data,
            params=params,
            headers={**bearer(job["token"]), "Content-Type": content_type},
        )


async def post_finish(
    client: httpx.AsyncClient,
    job: dict[str, Any],
    status: str = "succeeded",
    exit_code: int | None = 0,
    line_count: int | None = None,
    token: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"status": status, "exit_code": exit_code}
    if line_count is not None:
        body["line_count"] = line_count
    async with asyncio.timeout(TIMEOUT):
        return await client.post(
            f"/api/jobs/{job['id']}/finish",
            json=body,
            headers=bearer(token if token is not None else job["token"]),
        )


async def finish(client: httpx.AsyncClient, job: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    r = await post_finish(client, job, **kwargs)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def all_lines(
    client: httpx.AsyncClient, job_id: int, page: int = 1000
) -> list[dict[str, Any]]:
    """Every stored line of a job via the JSON endpoint, following next_after."""
    out: list[dict[str, Any]] = []
    after = 0
    async with asyncio.timeout(TIMEOUT * 3):
        while True:
            r = await client.get(
                f"/api/jobs/{job_id}/lines", params={"after": after, "limit": page}
            )
            assert r.status_code == 200, r.text
            body = r.json()
            out += body["lines"]
            if body["next_after"] is None:
                return out
            assert body["next_after"] > after
            after = body["next_after"]


async def read_text(client: httpx.AsyncClient, job_id: int, **params: Any) -> httpx.Response:
    """The raw text log (no SSE accept); for a finished job the body ends."""
    async with asyncio.timeout(TIMEOUT):
        return await client.get(f"/api/jobs/{job_id}/log", params=params)


def text_lines(body: bytes) -> list[str]:
    """Split the raw text format (every line ends with LF) back into lines."""
    text = body.decode("utf-8")
    if not text:
        return []
    assert text.endswith("\n"), text[-50:]
    return text[:-1].split("\n")


class SSEResult:
    def __init__(self) -> None:
        self.response: httpx.Response | None = None
        self.parser = SSEParser()
        self.events: list[Event] = []
        self.raw = bytearray()
        self.closed = False

    @property
    def lines(self) -> list[Event]:
        return [e for e in self.events if e.type == "message"]

    @property
    def end(self) -> Event | None:
        ends = [e for e in self.events if e.type == "end"]
        return ends[-1] if ends else None

    def end_data(self) -> dict[str, Any]:
        assert self.end is not None, "no end event"
        return json.loads(self.end.data)  # type: ignore[no-any-return]


async def read_sse(
    client: httpx.AsyncClient,
    path: str,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    timeout: float = TIMEOUT,
) -> SSEResult:
    """Read an SSE response to its end (the server must close it within `timeout`)."""
    result = SSEResult()
    async with asyncio.timeout(timeout):
        async with client.stream(
            "GET", path, headers={**SSE, **(headers or {})}, params=params
        ) as resp:
            result.response = resp
            async for chunk in resp.aiter_bytes():
                result.raw += chunk
                if resp.status_code == 200:
                    result.events += result.parser.feed(chunk)
            result.closed = True
    return result


class Tail:
    """Reads one stream in a background task; the test awaits what it expects to see."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        path: str,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        sse: bool = True,
    ) -> None:
        self.client = client
        self.path = path
        self.sse = sse
        self.headers = {**(SSE if sse else {}), **(headers or {})}
        self.params = params
        self.result = SSEResult()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def events(self) -> list[Event]:
        return self.result.events

    @property
    def raw(self) -> bytearray:
        return self.result.raw

    @property
    def closed(self) -> bool:
        return self.result.closed

    async def _run(self) -> None:
        try:
            async with self.client.stream(
                "GET", self.path, headers=self.headers, params=self.params
            ) as resp:
                self.result.response = resp
                self._changed.set()
                async for chunk in resp.aiter_bytes():
                    self.result.raw += chunk
                    if self.sse:
                        self.result.events += self.result.parser.feed(chunk)
                    self._changed.set()
            self.result.closed = True
        finally:
            self._changed.set()

    async def __aenter__(self) -> Tail:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def wait(
        self, predicate: Callable[[Tail], bool], timeout: float = TIMEOUT, what: str = "condition"
    ) -> None:
        assert self._task is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self._changed.clear()
                    if predicate(self):
                        return
                    if self._task.done():
                        self._task.result()  # re-raise a failure of the reader
                        raise AssertionError(f"stream closed before {what}: {bytes(self.raw)!r}")
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"timed out waiting for {what}; got {bytes(self.raw)[-500:]!r}"
            ) from None

    async def started(self) -> None:
        """The response head arrived (and, for SSE, the opening `retry:`)."""
        if self.sse:
            await self.wait(lambda t: t.result.parser.retry is not None, what="retry field")
        else:
            await self.wait(lambda t: t.result.response is not None, what="response head")

    async def ended(self, timeout: float = TIMEOUT) -> None:
        """The server closed the stream."""
        await self.wait(lambda t: t.closed, timeout, what="the end of the stream")


def make_job_sync(
    base_url: str,
    name: str = "job",
    lines: list[str] | None = None,
    finish_status: str | None = None,
    exit_code: int | None = 0,
) -> dict[str, Any]:
    """Create a job (optionally with lines, optionally finished) with a sync client; for
    module-scoped fixtures shared by read-only or validation-only tests."""
    with httpx.Client(base_url=base_url, timeout=TIMEOUT) as client:
        r = client.post("/api/jobs", json={"name": name})
        assert r.status_code == 201, r.text
        job: dict[str, Any] = r.json()
        if lines:
            r = client.post(
                f"/api/jobs/{job['id']}/lines", json={"lines": lines}, headers=bearer(job["token"])
            )
            assert r.status_code == 200, r.text
        if finish_status is not None:
            r = client.post(
                f"/api/jobs/{job['id']}/finish",
                json={"status": finish_status, "exit_code": exit_code},
                headers=bearer(job["token"]),
            )
            assert r.status_code == 200, r.text
    return job
