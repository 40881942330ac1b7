"""The dashboard: the pages and static files of web/ (job list at /, viewer at /jobs/N, and
the sign-in page). With LOGSTREAM_AUTH=tokens a page asked for without a session answers 401
(or 403) with the sign-in page itself, so the browser shows a form, not a blank page, and the
URL stays what it was: signing in reloads it. The static files (/ui/) hold nothing secret."""

from __future__ import annotations

import errno

from quart import Blueprint, Response, current_app, redirect, send_from_directory

from logstream.server.errors import ApiError, NotFound
from logstream.server.http.access import require, services
from logstream.server.http.core import parse_job_id
from logstream.server.http.routes import error_response
from logstream.server.shipped import shipped_dir
from logstream.server.store import queries

WEB_DIR = shipped_dir("logstream.web")

_NOT_THERE = {errno.ENAMETOOLONG, errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EISDIR}

bp = Blueprint("web", __name__, static_folder=str(WEB_DIR), static_url_path="/ui")

# The pages load only their own scripts and styles and talk only to this origin: a log line
# that somehow reached the DOM as markup could still not run script.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


@bp.after_request
async def _headers(response: Response) -> Response:
    """Security headers on every dashboard response; revalidate so a deploy shows at once."""
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers["Cache-Control"] = "no-cache"
    return response


async def _sign_in_instead() -> Response | None:
    """The sign-in page (401/403) for a reader who may not read; None for one who may."""
    try:
        await require("read")
    except ApiError as error:
        page = await send_from_directory(WEB_DIR, "signin.html")
        page.status_code = error.status
        return page
    return None


async def _page(name: str) -> Response:
    """A dashboard page, or the sign-in page in its place for a reader who may not."""
    refused = await _sign_in_instead()
    return refused if refused is not None else await send_from_directory(WEB_DIR, name)


@bp.get("/")
async def job_list() -> Response:
    """The live job list."""
    return await _page("index.html")


@bp.get("/jobs/<job_id>")
async def job_page(job_id: str) -> Response:
    """The log viewer of one job (the page reads the job id from its URL).

    The id is checked as the API checks it (ASCII digits only): Werkzeug's int converter
    also takes other Unicode digits ("/jobs/%D9%A1" would show job 1). A job that does not
    exist answers 404 with a page that says so.
    """
    number = parse_job_id(job_id)
    refused = await _sign_in_instead()
    if refused is not None:  # before the job is looked up: its existence is not public
        return refused
    async with current_app.extensions["logstream"].engine.connect() as conn:
        job = await queries.get_job(conn, number)
    if job is None:
        response = await send_from_directory(WEB_DIR, "notfound.html")
        response.status_code = 404
        return response
    return await send_from_directory(WEB_DIR, "job.html")


@bp.errorhandler(OSError)
async def _file_error(error: OSError) -> Response:
    """A path the file system refuses (a name too long, say) is not there: 404. (Left to the
    app's handler, an OSError reads as a store failure: 503 "retry".)"""
    if error.errno in _NOT_THERE:
        return error_response(NotFound("no such file"))
    return error_response(RuntimeError(f"reading a dashboard file failed: {error!r}"))


@bp.get("/signin")
async def sign_in_page() -> Response:
    """The sign-in form (in open mode there is nothing to sign in to: the job list)."""
    if services().settings.auth == "open":
        return redirect("/")  # type: ignore[return-value]
    return await send_from_directory(WEB_DIR, "signin.html")
