"""The framework-free cores of the API: parsing, checks, the hot routes and error answers.

Both fronts call these: the Quart blueprint (routes.py) and the bare-ASGI hot routes
(asgi.py), so checks, errors and bytes are the same whichever serves a request.
"""

from __future__ import annotations

import asyncio
import codecs
import dataclasses
import json
import logging
import math
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from logstream import logtext, sse
from logstream.server import metrics
from logstream.server.auth import NO_CREDENTIALS, Credentials, require_role, sealing_token
from logstream.server.errors import (
    ApiError,
    BadRequest,
    NotFound,
    ShuttingDown,
    StorageFull,
    TooLarge,
    Unavailable,
    UnsupportedMediaType,
)
from logstream.server.live import tail
from logstream.server.live.feed import JobEnd
from logstream.server.services import Services
from logstream.server.store import queries
from logstream.server.store.driver import describe_error, is_storage_full, is_store_error
from logstream.server.writer import AppendResult, StaleMasks

log = logging.getLogger("logstream")

# The largest id or line number the store's 64-bit integer columns can hold.
MAX_STORED_INT = 2**63 - 1
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

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
    except Exception:  # cut off or too slow (TimeoutError too): it closes, as it would
        pass


def json_bytes(payload: Any) -> bytes:
    """The compact, strict UTF-8 JSON every API answer uses (see logtext.json_bytes)."""
    return logtext.json_bytes(payload)


def answer_headers(status: int, payload: Any) -> dict[str, str]:
    """Headers an API answer carries for its body: Retry-After for a 503's `retry_after`."""
    if status == 503 and isinstance(payload, dict) and isinstance(payload.get("retry_after"), int):
        return {"Retry-After": str(payload["retry_after"])}
    return {}


def refuse_while_draining(svc: Services) -> None:
    """503 for a new stream while this process drains for shutdown: opened now, it would get
    only the farewell (or be cut), and a browser with a short `retry:` would come straight
    back; a 503 sends it (through the load balancer) to another instance."""
    if svc.hub.streams.closing:
        raise ShuttingDown("the server is shutting down; reconnect to another instance")


def parse_int(
    name: str,
    raw: str | None,
    default: int | None,
    *,
    minimum: int = 0,
    maximum: int = MAX_STORED_INT,
) -> int | None:
    """A whole-number query parameter within bounds, or `default` when absent."""
    if raw is None or raw == "":
        return default
    digits = raw.strip()
    if not digits.isascii() or not digits.isdigit():
        raise BadRequest(f"query parameter {name} must be a whole number", field=name)
    # int() refuses more than 4,300 digits (a ValueError, not a client error): no storable
    # number has more than 19 once leading zeros are dropped.
    significant = digits.lstrip("0") or "0"
    value = int(significant) if len(significant) <= 19 else maximum + 1
    if value < minimum or value > maximum:
        raise BadRequest(
            f"query parameter {name} must be >= {minimum} and <= {maximum}", field=name
        )
    return value


def parse_job_id(raw: str) -> int:
    """A job id from a URL path: ASCII digits naming a storable id, else 404."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) > MAX_STORED_INT:
        raise NotFound(f"job {raw[:40]} does not exist")
    return int(raw)


async def get_job_or_404(svc: Services, job_id: int) -> queries.Job:
    """The job, or 404."""
    async with svc.engine.connect() as conn:
        job = await queries.get_job(conn, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist", job_id=job_id)
    return job


# Request bodies nest at most this deep (the API's own bodies need 2, a job's meta the rest).
MAX_JSON_DEPTH = 64
_NOT_OPENER = bytes(b for b in range(256) if b not in b"[{")


def nests_deeper(value: Any, limit: int) -> bool:
    """True when the parsed JSON `value` nests arrays and objects more than `limit` deep
    (walked with a stack of its own, so it cannot recurse)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def _no_constant(name: str) -> Any:
    raise BadRequest(f"the body is not strict JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequest(f"the body is not strict JSON: {text[:40]} is out of range")
    return value


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object: strict JSON in UTF-8 (RFC 8259), no NaN
    or Infinity, nested at most MAX_JSON_DEPTH deep; else 400.

    The depth is checked on the parsed value, and only for a body with more than
    MAX_JSON_DEPTH brackets at all (one C-speed count of the bytes: log lines hold brackets
    in their text, so checking the bytes exactly would cost about as much as parsing them).
    A body nested past what json.loads itself recurses through (about 1,000 levels) ends its
    parse in RecursionError, raised cleanly by the parser before anything else sees the body:
    that is the same 400.
    """
    too_deep = BadRequest(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        payload = json.loads(
            raw.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float
        )
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise too_deep from None
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object")
    if len(raw.translate(None, _NOT_OPENER)) > MAX_JSON_DEPTH and nests_deeper(
        payload, MAX_JSON_DEPTH
    ):
        raise too_deep
    return payload


def media_type(content_type: str | None, content_encoding: str | None) -> tuple[str, str | None]:
    """The media type of a request body and its declared charset (lower case), or 415 for a
    compressed body (logstream decodes no Content-Encoding)."""
    if content_encoding is not None and content_encoding.strip().lower() not in ("", "identity"):
        raise UnsupportedMediaType(
            "send the body uncompressed: no Content-Encoding is accepted",
            content_encoding=content_encoding[:40],
        )
    mimetype, _, params = (content_type or "").partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return mimetype.strip().lower(), charset


def require_json(content_type: str | None, content_encoding: str | None) -> None:
    """A body that must be JSON says so (`application/json`, UTF-8 if a charset is given),
    else 415: a browser sends a cross-site request without a preflight only as text/plain,
    a form or multipart, so this also keeps foreign pages from posting to an open server."""
    mimetype, charset = media_type(content_type, content_encoding)
    if mimetype != "application/json":
        raise UnsupportedMediaType(
            f"send the body as application/json, not {mimetype[:60] or 'without a type'}"
        )
    if charset is not None and charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"JSON is UTF-8: charset {charset[:40]} is not accepted")


# The charsets a text body may declare (Python's names for them); undeclared is UTF-8.
TEXT_CHARSETS = frozenset(
    {"utf-8", "ascii", "iso8859-1", "cp1252", "utf-16", "utf-16-le", "utf-16-be"}
)


def text_encoding(charset: str | None) -> str:
    """The codec to decode a text body with: its declared charset when logstream knows it,
    else 415 (rather than storing it misread)."""
    if charset is None:
        return "utf-8"
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        name = ""
    if name not in TEXT_CHARSETS:
        raise UnsupportedMediaType(
            f"charset {charset[:40]} is not accepted: send UTF-8 (or ISO-8859-1, windows-1252,"
            " UTF-16)",
            charset=charset[:40],
        )
    return "utf-8" if name == "ascii" else name  # ASCII is UTF-8; bytes past it get U+FFFD


async def append_core(
    svc: Services,
    job_id: int,
    *,
    credentials: Credentials,
    content_type: str | None,
    content_encoding: str | None,
    first_arg: str | None,
    read_body: Callable[[], Awaitable[bytes]],
) -> dict[str, Any]:
    """POST /api/jobs/{id}/lines: check, parse, clean, append (served by asgi.py).

    `{"lines": []}` is a keepalive: the answer's `job_status` says whether to stop."""
    started = time.perf_counter()
    principal = await require_role(svc, credentials, "runner", own_job=job_id)
    token = sealing_token(principal, credentials, job_id)  # before the body is read
    mimetype, charset = media_type(content_type or "text/plain", content_encoding)
    if mimetype == "application/json":
        require_json(content_type, content_encoding)
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
        encoding = text_encoding(charset)
        texts = logtext.split_chunk(logtext.clean(logtext.decode(await read_body(), encoding)))
    else:
        raise UnsupportedMediaType(f"send lines as application/json or text/plain, not {mimetype}")
    result, cut_count = await _append_masked(svc, job_id, token, texts, first)
    body: dict[str, Any] = result.to_json()
    body["cut"] = cut_count
    metrics.APPEND_SECONDS.observe(time.perf_counter() - started)
    return body


async def _append_masked(
    svc: Services, job_id: int, token: str, texts: list[str], first: int | None
) -> tuple[AppendResult, int]:
    """Mask the lines with the job's masks (server/masks.py), cut them, append them; mask
    again and retry if the masks changed meanwhile (another request or instance added one)."""
    for attempt in range(3):
        masks = await svc.masks.get(job_id, token)
        masked, after = masks.masker.scan(texts)
        change = svc.masks.change(masks, after, token)
        cut_count = 0
        limit = svc.settings.max_line_chars
        if masked and max(map(len, masked)) > limit:  # after masking: a cut secret is a leak
            for index, text in enumerate(masked):
                if len(text) > limit:
                    masked[index], _ = logtext.cut(text, limit)
                    cut_count += 1
        try:
            result = await svc.writer.append(job_id, masked, first, change)
        except StaleMasks:
            svc.masks.forget(job_id)
            if attempt == 2:
                raise
            continue
        svc.masks.committed(job_id, change, after)
        return result, cut_count
    raise AssertionError("unreachable")


@dataclasses.dataclass
class LogAnswer:
    """What GET /api/jobs/{id}/log answers, before the ASGI front renders it."""

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
    credentials: Credentials = NO_CREDENTIALS,
) -> LogAnswer:
    """GET /api/jobs/{id}/log: the SSE stream (resumable by Last-Event-ID) or the raw text
    (`follow=1` keeps it open). Served by asgi.py."""
    principal = await require_role(svc, credentials, "read", own_job=job_id)
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
    last_n = parse_int("tail", args.get("tail"), None)
    follow_text = args.get("follow", "0").lower() in ("1", "true", "yes")
    refuse_while_draining(svc)
    job = await get_job_or_404(svc, job_id)
    if resumed is not None:
        # An id past the job's last line cannot come from this job's stream (every line a
        # client was sent is committed, so no process reads a smaller count): a store restored
        # from a backup, or an id from elsewhere. Resume from the job's end, so the lines stored
        # from now on are sent rather than skipped up to that id.
        cursor = min(resumed, job.line_count)
    elif after is not None:
        cursor = after
    elif last_n is not None:
        cursor = max(0, job.line_count - last_n)
    else:
        cursor = 0
    end = JobEnd(job.status, job.exit_code, job.line_count) if job.finished else None
    if wants_sse and end is not None and resumed is not None and resumed >= job.line_count:
        # Nothing left to send: 204 tells EventSource to stop reconnecting.
        return LogAnswer(204, None, {"Cache-Control": "no-cache"}, None)
    stream = tail.follow(
        svc.hub,
        job_id,
        cursor,
        "sse" if wants_sse else "text",
        live=wants_sse or follow_text,
        end=end,
        retry_ms=svc.settings.retry_ms,
        grant=None if principal is None else principal.grant(),
    )
    if wants_sse:
        return LogAnswer(200, "text/event-stream", STREAM_HEADERS, stream)
    headers = STREAM_HEADERS if follow_text else {}
    return LogAnswer(200, "text/plain; charset=utf-8", headers, stream)


def error_answer(error: Exception) -> tuple[int, dict[str, Any]]:
    """Status and JSON body for an exception a request ended with: a client error as itself,
    a store failure as 503 (the client retries; `storage_full` when it has no room), anything
    else as a logged 500."""
    if isinstance(error, ApiError):
        return error.status, error.body()
    if is_storage_full(error):
        log.error("store is full: %s", describe_error(error))
        return StorageFull.status, StorageFull("the store has no room for the write").body()
    if is_store_error(error):
        metrics.store_error("request")
        log.warning("store unavailable: %s", describe_error(error))  # an outage: no traceback
        return Unavailable.status, Unavailable("the store is unavailable; retry shortly").body()
    log.exception("unhandled error", exc_info=error)
    return 500, {"error": "internal", "message": "internal error; the request may be retried"}
