"""The dashboard: the pages and static files of web/ (job list at /, viewer at /jobs/N)."""

from __future__ import annotations

from quart import Blueprint, Response, send_from_directory

from logstream.server.shipped import shipped_dir

WEB_DIR = shipped_dir("logstream.web")

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


@bp.get("/")
async def job_list() -> Response:
    """The live job list."""
    return await send_from_directory(WEB_DIR, "index.html")


@bp.get("/jobs/<int:job_id>")
async def job_page(job_id: int) -> Response:
    """The log viewer of one job (the page reads the job id from its URL)."""
    return await send_from_directory(WEB_DIR, "job.html")
