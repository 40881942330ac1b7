"""The Quart blueprint of the API: parse the request, call a core or the store, render JSON.

The hot routes (append, log stream) are not here: asgi.py answers them in front of Quart.
No SQL here: the store's queries do that.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from quart import Blueprint, Response, current_app, request

from logstream import logtext, masking, sse
from logstream.protocol import STATUSES_FINISH
from logstream.server import metrics, search
from logstream.server.auth import check_cancel, check_metrics, may_cancel
from logstream.server.errors import BadRequest, NotFound, ShuttingDown, Unavailable
from logstream.server.http.access import request_credentials, require
from logstream.server.http.core import (
    STREAM_HEADERS,
    answer_headers,
    drain_limited,
    error_answer,
    get_job_or_404,
    json_bytes,
    parse_int,
    parse_job_id,
    parse_json_object,
    read_limited,
    refuse_while_draining,
    require_json,
)
from logstream.server.http.listing import parse_job_filter
from logstream.server.services import Services
from logstream.server.store import queries

bp = Blueprint("api", __name__)

MAX_NAME = 200
MAX_META_BYTES = 16 * 1024
MAX_MASKS = 1000
MAX_MASK_CHARS = 16 * 1024


def services() -> Services:
    """The running app's services (engine, writer, hub, settings)."""
    return current_app.extensions["logstream"]  # type: ignore[no-any-return]


def json_response(payload: Any, status: int = 200) -> Response:
    """A JSON answer in the API's encoding."""
    return Response(
        json_bytes(payload),
        status=status,
        mimetype="application/json",
        headers=answer_headers(status, payload),
    )


def error_response(error: Exception) -> Response:
    """The JSON error answer for the exception a request ended with."""
    status, body = error_answer(error)
    return json_response(body, status)


@bp.after_request
async def _drain_request_body(response: Response) -> Response:
    """An error answer to a request with a body: drain the body first (see drain_limited)."""
    if response.status_code >= 400 and request.method in ("POST", "PUT", "PATCH"):
        await drain_limited(
            request.body, request.content_length, services().settings.max_body_bytes
        )
    return response


async def _json_body() -> dict[str, Any]:
    """The request body as a JSON object, at most LOGSTREAM_MAX_BODY_BYTES (else 413), sent
    as application/json (else 415: see core.require_json)."""
    require_json(request.headers.get("Content-Type"), request.headers.get("Content-Encoding"))
    raw = await read_limited(
        request.body, request.content_length, services().settings.max_body_bytes
    )
    return parse_json_object(raw)


# --- jobs --------------------------------------------------------------------------------------


@bp.post("/api/jobs")
async def create_job() -> Response:
    """Create a running job; answer with it and its write token."""
    await require("runner")
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
    # Like lines and the name: NUL and lone surrogates (in keys too) become U+FFFD, so what
    # is stored renders as strict UTF-8 JSON on both backends.
    meta = logtext.clean_json(meta)
    if len(json_bytes(meta)) > MAX_META_BYTES:
        raise BadRequest(f"meta must be at most {MAX_META_BYTES} bytes of JSON", field="meta")
    values = _mask_values(payload.get("mask"))
    svc = services()
    masker = masking.Masker(values, svc.masks.patterns)
    name, meta = masker.mask(logtext.clean(name)), masking.mask_json(masker, meta)
    assert isinstance(meta, dict)
    data_key, sealed = svc.masks.new_job(values)
    job, token = await svc.writer.create_job(name, meta, sealed)
    svc.masks.created(job.id, values, data_key)
    body = job.to_json()
    body["token"] = token
    return json_response(body, 201)


def _mask_values(raw: Any) -> list[str]:
    """The secrets a new job masks (`"mask": [...]`); errors never show a value."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_MASKS:
        raise BadRequest(f"mask must be a list of at most {MAX_MASKS} strings", field="mask")
    values: list[str] = []
    for index, value in enumerate(raw):
        if not isinstance(value, str) or len(value) > MAX_MASK_CHARS:
            raise BadRequest(
                f"mask[{index}] must be a string of at most {MAX_MASK_CHARS} characters",
                field="mask",
                index=index,
            )
        try:
            masking.check_value(value, f"mask[{index}]")
        except masking.MaskError as error:
            raise BadRequest(str(error), field="mask", index=index) from None
        values.append(logtext.clean(value))
    return values


@bp.get("/api/jobs")
async def list_jobs() -> Response:
    """Jobs newest first; `limit` and the opaque `cursor` from the previous page; filtered by
    `status`, `name`, `name_prefix` and `meta.KEY` (see listing.parse_job_filter)."""
    await require("read")
    limit = parse_int("limit", request.args.get("limit"), 50, minimum=1, maximum=500)
    assert limit is not None
    cursor = parse_int("cursor", request.args.get("cursor"), None, minimum=1)
    where = parse_job_filter(request.args.items(multi=True))
    async with services().engine.connect() as conn:
        # The event cursor is read first: an event after it is replayed by /api/events.
        events_cursor = await queries.last_job_event_id(conn)
        jobs = await queries.list_jobs(conn, limit + 1, cursor, where)
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return json_response(
        {
            "jobs": [job.to_json() for job in jobs],
            "next_cursor": str(jobs[-1].id) if more and jobs else None,
            "events_cursor": events_cursor,
        }
    )


@bp.get("/api/events")
async def job_events() -> Response:
    """Job lifecycle as SSE: `job` events (resumable ids) and id-less `progress` events."""
    principal = await require("read")
    header = request.headers.get("Last-Event-ID")
    resumed = sse.parse_last_event_id(header)
    if header is not None and resumed is None:
        raise BadRequest("Last-Event-ID must be an event number (digits only)")
    after = parse_int("after", request.args.get("after"), None)
    svc = services()
    refuse_while_draining(svc)
    if resumed is not None:
        cursor = resumed
    elif after is not None:
        cursor = after
    else:
        async with svc.engine.connect() as conn:
            cursor = await queries.last_job_event_id(conn)
    if request.method == "HEAD":
        # The headers a GET would get, and no body: a stream that never ends would leave the
        # HEAD unanswered and its keep-alive connection stuck.
        head = Response(b"", content_type="text/event-stream", headers=STREAM_HEADERS)
        del head.headers["Content-Length"]  # a GET's stream has none
        return head
    response = Response(
        svc.hub.events.stream(
            cursor, svc.settings.retry_ms, None if principal is None else principal.grant()
        ),
        content_type="text/event-stream",
        headers=STREAM_HEADERS,
    )
    response.timeout = None  # the feed lives as long as the page; Quart would cut it at 60 s
    return response


@bp.get("/api/jobs/<job_id>")
async def show_job(job_id: str) -> Response:
    """One job, and whether this request may cancel it (the dashboard's Cancel button)."""
    svc = services()
    number = parse_job_id(job_id)
    await require("read", own_job=number)
    job = await get_job_or_404(svc, number)
    body = job.to_json()
    body["can_cancel"] = not job.finished and await may_cancel(svc, request_credentials(), job.id)
    return json_response(body)


@bp.post("/api/jobs/<job_id>/cancel")
async def cancel_job(job_id: str) -> Response:
    """Ask a running job to stop: 202 with the job (`cancel_requested_at` set); its runner
    stops the command and finishes the job as canceled."""
    number = parse_job_id(job_id)
    await check_cancel(services(), request_credentials(), number)
    # As application/json (its body empty or an object, unused for now): a page on another
    # site could send a body-less POST without a CORS preflight, and on an open server
    # that would cancel jobs (see core.require_json).
    require_json(request.headers.get("Content-Type"), request.headers.get("Content-Encoding"))
    raw = await read_limited(
        request.body, request.content_length, services().settings.max_body_bytes
    )
    if raw.strip():
        parse_json_object(raw)
    job = await services().writer.cancel(number)
    return json_response(job.to_json(), 200 if job.finished else 202)


@bp.post("/api/jobs/<job_id>/finish")
async def finish_job(job_id: str) -> Response:
    """Give the job its final status and exit code."""
    number = parse_job_id(job_id)
    await require("runner", own_job=number)
    payload = await _json_body()
    status = payload.get("status")
    if status not in STATUSES_FINISH:
        raise BadRequest("status must be one of " + ", ".join(STATUSES_FINISH), field="status")
    exit_code = payload.get("exit_code")
    if exit_code is not None and (
        not isinstance(exit_code, int)
        or isinstance(exit_code, bool)
        or not -(2**31) <= exit_code < 2**31
    ):
        raise BadRequest("exit_code must be a whole number or null", field="exit_code")
    line_count = payload.get("line_count")
    if line_count is not None and (
        not isinstance(line_count, int) or isinstance(line_count, bool) or line_count < 0
    ):
        raise BadRequest("line_count must be a whole number >= 0", field="line_count")
    job = await services().writer.finish(number, status, exit_code, line_count)
    services().masks.forget(number)  # the store erased them with the finish
    return json_response(job.to_json())


# --- reading -----------------------------------------------------------------------------------


@bp.get("/api/jobs/<job_id>/lines")
async def read_lines(job_id: str) -> Response:
    """A JSON page of lines after `after`, with numbers and receive timestamps."""
    number = parse_job_id(job_id)
    await require("read", own_job=number)
    after = parse_int("after", request.args.get("after"), 0)
    limit = parse_int("limit", request.args.get("limit"), 1000, minimum=1, maximum=10_000)
    assert after is not None and limit is not None
    async with services().engine.connect() as conn:
        job = await queries.get_job(conn, number)
        if job is None:
            raise NotFound(f"job {number} does not exist", job_id=number)
        rows = await queries.read_lines(conn, number, after, limit)
    return json_response(
        {
            "job_id": number,
            "status": job.status,
            "line_count": job.line_count,
            "lines": [{"n": no, "ts": queries.iso(ts), "text": text} for no, ts, text in rows],
            "next_after": rows[-1][0] if rows and rows[-1][0] < job.line_count else None,
        }
    )


@bp.get("/api/jobs/<job_id>/search")
async def search_log(job_id: str) -> Response:
    """Line numbers whose visible text contains `q` (matches it, with regex=1; case-insensitive
    unless case=1), after line `after` (default 0: the whole log): the next page of hits starts
    after the last one."""
    number = parse_job_id(job_id)
    await require("read", own_job=number)
    query = request.args.get("q", "")
    if not query:
        raise BadRequest("q must be a non-empty search text", field="q")
    if len(query) > 1000:
        raise BadRequest("q must be at most 1000 characters", field="q")
    case = request.args.get("case", "0").lower() in ("1", "true", "yes")
    limit = parse_int("limit", request.args.get("limit"), 1000, minimum=1, maximum=10_000)
    after = parse_int("after", request.args.get("after"), 0)
    assert limit is not None and after is not None
    regex = request.args.get("regex", "0").lower() in ("1", "true", "yes")
    pattern = search.compile_regex(query, case) if regex else None
    await get_job_or_404(services(), number)
    if pattern is None:
        result = await search.search_log(
            services().engine, number, query, case=case, limit=limit, after=after
        )
    else:
        result = await search.search_regex(
            services().engine, number, pattern, limit=limit, after=after
        )
    body: dict[str, Any] = {
        "query": query,
        "after": after,
        "count": result.count,
        "lines": result.lines,
        "truncated": result.truncated,
    }
    if regex:  # a regex scan may stop early (search.REGEX_SECONDS): from where to go on
        body.update(regex=True, complete=result.scanned_to is None, scanned_to=result.scanned_to)
    return json_response(body)


# --- operations --------------------------------------------------------------------------------

READY_TIMEOUT = 2.0


@bp.get("/healthz")
async def healthz() -> Response:
    """Liveness: the process answers (the store is /readyz's question)."""
    return json_response({"ok": True, "pid": os.getpid(), "streams": services().hub.streams.count})


@bp.get("/readyz")
async def readyz() -> Response:
    """Readiness: the store answers within READY_TIMEOUT s, and the process is not stopping."""
    svc = services()
    if svc.hub.streams.closing:
        raise ShuttingDown("the server is shutting down")
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            async with svc.engine.connect() as conn:
                await queries.ping(conn)
    except TimeoutError:
        metrics.store_error("request")
        raise Unavailable(f"the store did not answer within {READY_TIMEOUT:g} s") from None
    return json_response({"ok": True})


@bp.get("/metrics")
async def prometheus_metrics() -> Response:
    """The Prometheus text exposition (every worker's, in multiprocess mode)."""
    svc = services()
    await check_metrics(svc, request_credentials())
    return Response(metrics.render(svc.live_counts), content_type=metrics.CONTENT_TYPE)
