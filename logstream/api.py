"""The HTTP API: parse the request, call the writer or the store, render the answer. No SQL."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from quart import Blueprint, Response, current_app, g, request

from . import logtext, search, sse, store
from .errors import (
    ApiError,
    BadRequest,
    Forbidden,
    NotFound,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from .follow import JobEnd
from .services import Services
from .writer import hash_token

bp = Blueprint("api", __name__)
log = logging.getLogger("logstream")

MAX_NAME = 200
MAX_META_BYTES = 16 * 1024
# The largest id or line number the store's 64-bit integer columns can hold.
MAX_STORED_INT = 2**63 - 1
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
TEXT_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# An oversized body is refused only after reading (and dropping) some more of it: closing a
# connection with unread request data makes the kernel send RST, which can destroy the 413
# before the client reads it ("lingering close", as nginx does). Bounded in bytes and time.
DRAIN_FACTOR = 4
DRAIN_SECONDS = 2.0


async def read_limited(chunks: AsyncIterable[bytes], declared: int | None, limit: int) -> bytes:
    """A request body of at most `limit` bytes (else 413), from its chunks as they arrive."""
    if declared is not None and declared > limit:
        raise TooLarge(f"the request body is larger than {limit} bytes", limit=limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the request body is larger than {limit} bytes", limit=limit)
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def drain_limited(chunks: AsyncIterable[bytes], declared: int | None, limit: int) -> None:
    """Receive (and drop) what is left of a request body before an error answer goes out.

    Hypercorn closes an HTTP/1.1 connection whose response ends before the request body
    has arrived, without sending `Connection: close`, so a keep-alive client's next request
    on it fails ("server disconnected"), and the unread data can turn the close into a reset
    that loses the answer. Receiving the body (within DRAIN_FACTOR x `limit` bytes and
    DRAIN_SECONDS) avoids both.
    """
    bound = limit * DRAIN_FACTOR
    if declared is not None and declared > bound:
        return
    received = 0
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for chunk in chunks:
                received += len(chunk)
                if received > bound:
                    break
    except (TimeoutError, Exception):  # cut off or too slow: it closes, as it would
        pass


@bp.after_request
async def _drain_request_body(response: Response) -> Response:
    """An error answer to a request with a body: drain the body first (see drain_limited)."""
    if response.status_code >= 400 and request.method in ("POST", "PUT", "PATCH"):
        await drain_limited(
            request.body, request.content_length, services().settings.max_body_bytes
        )
    return response


async def _read_body() -> bytes:
    """The request body, at most LOGSTREAM_MAX_BODY_BYTES (else 413 after a bounded drain)."""
    cached: bytes | None = g.get("body")
    if cached is not None:
        return cached
    g.body = await read_limited(
        request.body, request.content_length, services().settings.max_body_bytes
    )
    return g.body  # type: ignore[no-any-return]


def services() -> Services:
    """The running app's services (engine, writer, hub, settings)."""
    return current_app.extensions["logstream"]  # type: ignore[no-any-return]


def json_bytes(payload: Any) -> bytes:
    """The compact UTF-8 JSON every API answer uses."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json_bytes(payload), status=status, mimetype="application/json")


async def _json_body() -> dict[str, Any]:
    return parse_json_object(await _read_body())


def parse_int(name: str, raw: str | None, default: int | None, *, minimum: int = 0,
              maximum: int | None = None) -> int | None:
    """A whole-number query parameter within bounds, or `default` when absent."""
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.strip().isdigit():
        raise BadRequest(f"query parameter {name} must be a whole number", field=name)
    value = int(raw)
    if maximum is None:
        maximum = MAX_STORED_INT
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        raise BadRequest(f"query parameter {name} must be {bound}", field=name)
    return value


def _int_arg(name: str, default: int | None, *, minimum: int = 0, maximum: int | None = None
             ) -> int | None:
    return parse_int(name, request.args.get(name), default, minimum=minimum, maximum=maximum)


def parse_bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is none."""
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'")
    return token.strip()


def _bearer() -> str | None:
    return parse_bearer(request.headers.get("Authorization"))


def _is_runner(token: str) -> bool:
    return is_runner(services(), token)


def is_runner(svc: Services, token: str) -> bool:
    """True when `token` is the configured runner token."""
    runner = svc.settings.runner_token
    return runner is not None and hmac.compare_digest(token.encode(), runner.encode())


async def check_job_token(svc: Services, job_id: int, authorization: str | None) -> None:
    """The job's own token, or the runner token, may write to a job."""
    token = parse_bearer(authorization)
    if token is None:
        raise Unauthorized("this needs 'Authorization: Bearer <job token>'")
    _check_job_id(job_id)
    expected = await svc.token_hash(job_id)
    if expected is None:
        raise NotFound(f"job {job_id} does not exist", job_id=job_id)
    if hmac.compare_digest(hash_token(token), expected) or is_runner(svc, token):
        return
    raise Forbidden(f"the token is not valid for job {job_id}")


async def _require_job_token(job_id: int) -> None:
    await check_job_token(services(), job_id, request.headers.get("Authorization"))


def _check_job_id(job_id: int) -> None:
    """An id too large for the store names no job (rather than failing the query)."""
    if job_id > MAX_STORED_INT:
        raise NotFound(f"job {job_id} does not exist", job_id=job_id)


async def get_job_or_404(svc: Services, job_id: int) -> store.Job:
    """The job, or 404."""
    _check_job_id(job_id)
    async with svc.engine.connect() as conn:
        job = await store.get_job(conn, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist", job_id=job_id)
    return job


async def _get_job(job_id: int) -> store.Job:
    return await get_job_or_404(services(), job_id)


# --- jobs --------------------------------------------------------------------------------------


@bp.post("/api/jobs")
async def create_job() -> Response:
    """Create a running job; answer with it and its write token."""
    if services().settings.runner_token is not None:
        token = _bearer()
        if token is None:
            raise Unauthorized("creating a job needs 'Authorization: Bearer <runner token>'")
        if not _is_runner(token):
            raise Forbidden("the runner token is not valid")
    payload = await _json_body()
    name = payload.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("name must be a non-empty string", field="name")
    if len(name) > MAX_NAME or "\n" in name or "\r" in name:
        raise BadRequest(f"name must be one line of at most {MAX_NAME} characters", field="name")
    meta = payload.get("meta", {})
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise BadRequest("meta must be a JSON object", field="meta")
    if len(json.dumps(meta)) > MAX_META_BYTES:
        raise BadRequest(f"meta must be at most {MAX_META_BYTES} bytes of JSON", field="meta")
    job, token = await services().writer.create_job(logtext.clean(name), meta)
    body = job.to_json()
    body["token"] = token
    return _json(body, 201)


@bp.get("/api/jobs")
async def list_jobs() -> Response:
    """Jobs newest first; `limit` and the opaque `cursor` from the previous page."""
    limit = _int_arg("limit", 50, minimum=1, maximum=500)
    assert limit is not None
    cursor = _int_arg("cursor", None, minimum=1)
    async with services().engine.connect() as conn:
        # The event cursor is read first: an event after it is replayed by /api/events.
        events_cursor = await store.last_job_event_id(conn)
        jobs = await store.list_jobs(conn, limit + 1, cursor)
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return _json(
        {
            "jobs": [job.to_json() for job in jobs],
            "next_cursor": str(jobs[-1].id) if more and jobs else None,
            "events_cursor": events_cursor,
        }
    )


@bp.get("/api/events")
async def job_events() -> Response:
    """Job lifecycle as SSE: `job` events (resumable ids) and id-less `progress` events."""
    header = request.headers.get("Last-Event-ID")
    resumed = sse.parse_last_event_id(header)
    if header is not None and resumed is None:
        raise BadRequest("Last-Event-ID must be an event number (digits only)")
    after = _int_arg("after", None)
    svc = services()
    assert svc.hub.lifecycle is not None
    if resumed is not None:
        cursor = resumed
    elif after is not None:
        cursor = after
    else:
        async with svc.engine.connect() as conn:
            cursor = await store.last_job_event_id(conn)
    response = Response(
        svc.hub.lifecycle.stream(cursor, svc.settings.retry_ms),
        content_type="text/event-stream",
        headers=SSE_HEADERS,
    )
    response.timeout = None
    return response


@bp.get("/api/jobs/<int:job_id>")
async def show_job(job_id: int) -> Response:
    """One job."""
    return _json((await _get_job(job_id)).to_json())


# --- appending ---------------------------------------------------------------------------------


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object."""
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object")
    return payload


async def append_core(
    svc: Services,
    job_id: int,
    *,
    authorization: str | None,
    content_type: str | None,
    first_arg: str | None,
    read_body: Callable[[], Awaitable[bytes]],
) -> dict[str, Any]:
    """POST /api/jobs/{id}/lines without the framework: check, parse, clean, append.

    Served by the ASGI fast path (fastpath.py) and by the Quart route below alike.
    """
    await check_job_token(svc, job_id, authorization)
    mimetype = (content_type or "text/plain").partition(";")[0].strip().lower()
    if mimetype == "application/json":
        payload = parse_json_object(await read_body())
        texts = payload.get("lines")
        if not isinstance(texts, list):
            raise BadRequest("lines must be a list of strings", field="lines")
        if not all(type(text) is str for text in texts):
            index = next(i for i, text in enumerate(texts) if not isinstance(text, str))
            raise BadRequest(f"lines[{index}] is not a string", field="lines", index=index)
        blob = "".join(texts)  # one scan of the whole batch instead of one per line
        if "\n" in blob:
            index = next(i for i, text in enumerate(texts) if "\n" in text)
            raise BadRequest(
                f"lines[{index}] contains a line feed: send one line per element",
                field="lines",
                index=index,
            )
        if logtext.clean(blob) is not blob:
            texts = [logtext.clean(text) for text in texts]
        first = payload.get("first")
        if first is not None and (
            not isinstance(first, int) or isinstance(first, bool) or first < 1
        ):
            raise BadRequest("first must be a whole number >= 1", field="first")
    elif mimetype.startswith("text/") or mimetype == "application/octet-stream":
        first = parse_int("first", first_arg, None, minimum=1)
        texts = logtext.split_chunk(logtext.clean(logtext.decode(await read_body())))
    else:
        raise UnsupportedMediaType(
            f"send lines as application/json or text/plain, not {mimetype}"
        )
    cut_count = 0
    limit = svc.settings.max_line_chars
    if texts and max(map(len, texts)) > limit:
        for index, text in enumerate(texts):
            if len(text) > limit:
                texts[index], _ = logtext.cut(text, limit)
                cut_count += 1
    result = await svc.writer.append(job_id, texts, first)
    body: dict[str, Any] = result.to_json()
    body["cut"] = cut_count
    return body


@bp.post("/api/jobs/<int:job_id>/lines")
async def append_lines(job_id: int) -> Response:
    """Append lines (JSON list or a text/plain chunk), idempotently when `first` is given.

    Servers started by logstream answer this path in fastpath.py before Quart sees it; this
    route serves the same core when the Quart app is run on its own.
    """
    return _json(await append_core(
        services(),
        job_id,
        authorization=request.headers.get("Authorization"),
        content_type=request.headers.get("Content-Type"),
        first_arg=request.args.get("first"),
        read_body=_read_body,
    ))


@bp.post("/api/jobs/<int:job_id>/finish")
async def finish_job(job_id: int) -> Response:
    """Give the job its final status and exit code."""
    await _require_job_token(job_id)
    payload = await _json_body()
    status = payload.get("status")
    if status not in store.STATUSES_FINAL:
        raise BadRequest(
            "status must be one of " + ", ".join(store.STATUSES_FINAL), field="status"
        )
    exit_code = payload.get("exit_code")
    if exit_code is not None and (not isinstance(exit_code, int) or isinstance(exit_code, bool)
                                  or not -(2**31) <= exit_code < 2**31):
        raise BadRequest("exit_code must be a whole number or null", field="exit_code")
    line_count = payload.get("line_count")
    if line_count is not None and (
        not isinstance(line_count, int) or isinstance(line_count, bool) or line_count < 0
    ):
        raise BadRequest("line_count must be a whole number >= 0", field="line_count")
    job, _changed = await services().writer.finish(job_id, status, exit_code, line_count)
    return _json(job.to_json())


# --- reading -----------------------------------------------------------------------------------


@dataclasses.dataclass
class LogAnswer:
    """What GET /api/jobs/{id}/log answers, before any framework renders it."""

    status: int
    content_type: str | None
    headers: dict[str, str]
    body: AsyncIterator[bytes] | None  # None: no body (204)


async def open_log(
    svc: Services,
    job_id: int,
    *,
    accept: str | None,
    last_event_id: str | None,
    args: Mapping[str, str],
) -> LogAnswer:
    """GET /api/jobs/{id}/log without the framework: the SSE stream (resumable by
    Last-Event-ID) or the raw text (`follow=1` keeps it open). Served by the ASGI fast path
    (fastpath.py) and by the Quart route below alike.
    """
    fmt = args.get("format")
    if fmt is not None:
        if fmt not in ("sse", "text"):
            raise BadRequest("format must be sse or text", field="format")
        wants_sse = fmt == "sse"
    else:
        wants_sse = "text/event-stream" in (accept or "")
    resumed = sse.parse_last_event_id(last_event_id)
    if last_event_id is not None and resumed is None:
        raise BadRequest("Last-Event-ID must be a line number (digits only)")
    after = parse_int("after", args.get("after"), None)
    tail = parse_int("tail", args.get("tail"), None)
    follow_text = args.get("follow", "0").lower() in ("1", "true", "yes")
    job = await get_job_or_404(svc, job_id)
    if resumed is not None:
        # An id past the job's last line cannot come from this job's stream (every line a
        # client was sent is committed, so no process reads a smaller count): a store restored
        # from a backup, or an id from elsewhere. Resume from the job's end, so the lines stored
        # from now on are sent rather than skipped up to that id.
        cursor = min(resumed, job.line_count)
    elif after is not None:
        cursor = after
    elif tail is not None:
        cursor = max(0, job.line_count - tail)
    else:
        cursor = 0
    end = JobEnd(job.status, job.exit_code, job.line_count) if job.finished else None
    if wants_sse and end is not None and resumed is not None and resumed >= job.line_count:
        # Nothing left to send: 204 tells EventSource to stop reconnecting.
        return LogAnswer(204, None, {"Cache-Control": "no-cache"}, None)
    stream = svc.hub.follow(
        job_id,
        cursor,
        "sse" if wants_sse else "text",
        live=wants_sse or follow_text,
        end=end,
        retry_ms=svc.settings.retry_ms,
    )
    if wants_sse:
        return LogAnswer(200, "text/event-stream", SSE_HEADERS, stream)
    return LogAnswer(200, "text/plain; charset=utf-8",
                     TEXT_STREAM_HEADERS if follow_text else {}, stream)


@bp.get("/api/jobs/<int:job_id>/log")
async def read_log(job_id: int) -> Response:
    """The log as SSE or raw text (see open_log; logstream's own server uses fastpath.py)."""
    answer = await open_log(
        services(),
        job_id,
        accept=request.headers.get("Accept"),
        last_event_id=request.headers.get("Last-Event-ID"),
        args=request.args,
    )
    response = Response(
        answer.body if answer.body is not None else "",
        status=answer.status,
        headers=answer.headers,
        content_type=answer.content_type,
    )
    response.timeout = None  # streams live as long as the job; Quart would cut them at 60 s
    return response


@bp.get("/api/jobs/<int:job_id>/lines")
async def read_lines(job_id: int) -> Response:
    """A JSON page of lines after `after`, with numbers and receive timestamps."""
    after = _int_arg("after", 0)
    limit = _int_arg("limit", 1000, minimum=1, maximum=10_000)
    assert after is not None and limit is not None
    _check_job_id(job_id)
    async with services().engine.connect() as conn:
        job = await store.get_job(conn, job_id)
        if job is None:
            raise NotFound(f"job {job_id} does not exist", job_id=job_id)
        rows = await store.read_lines(conn, job_id, after, limit)
    return _json(
        {
            "job_id": job_id,
            "status": job.status,
            "line_count": job.line_count,
            "lines": [{"n": no, "ts": store.iso(ts), "text": text} for no, ts, text in rows],
            "next_after": rows[-1][0] if rows and rows[-1][0] < job.line_count else None,
        }
    )


@bp.get("/api/jobs/<int:job_id>/search")
async def search_log(job_id: int) -> Response:
    """Line numbers whose visible text contains `q` (case-insensitive unless case=1), after
    line `after` (default 0: the whole log): the next page of hits starts after the last one."""
    query = request.args.get("q", "")
    if not query:
        raise BadRequest("q must be a non-empty search text", field="q")
    if len(query) > 1000:
        raise BadRequest("q must be at most 1000 characters", field="q")
    case = request.args.get("case", "0").lower() in ("1", "true", "yes")
    limit = _int_arg("limit", 1000, minimum=1, maximum=10_000)
    after = _int_arg("after", 0)
    assert limit is not None and after is not None
    await _get_job(job_id)
    result = await search.search_log(
        services().engine, job_id, query, case=case, limit=limit, after=after
    )
    return _json(
        {"query": query, "after": after, "count": result.count, "lines": result.lines,
         "truncated": result.truncated}
    )


@bp.get("/healthz")
async def healthz() -> Response:
    """Liveness: the process answers and the store can be queried."""
    async with services().engine.connect() as conn:
        await store.get_job(conn, 0)
    return _json({"ok": True, "pid": os.getpid(), "streams": services().hub.streams})


def error_response(error: Exception) -> Response:
    """Render the exception a request ended with as JSON (see error_answer)."""
    status, body = error_answer(error)
    return _json(body, status)


def error_answer(error: Exception) -> tuple[int, dict[str, Any]]:
    """Status and JSON body for an exception a request ended with: a client error as itself,
    a store failure as 503 (the client retries), anything else as a logged 500."""
    if isinstance(error, ApiError):
        return error.status, error.body()
    if store.is_store_error(error):
        log.warning("store unavailable: %s", error.__class__.__name__, exc_info=error)
        return Unavailable.status, Unavailable("the store is unavailable; retry shortly").body()
    log.exception("unhandled error", exc_info=error)
    return 500, {"error": "internal", "message": "internal error; the request may be retried"}