"""create_app(settings): the Quart app with its services, error handlers and lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator

from quart import Quart, Response
from werkzeug.exceptions import HTTPException

from logstream.config import Settings
from logstream.server.auth import count_live_tokens
from logstream.server.errors import ApiError, TooLarge
from logstream.server.http.accounts import bp as accounts_bp
from logstream.server.http.asgi import FastPaths
from logstream.server.http.guard import Guard, HostRule
from logstream.server.http.pages import bp as web_bp
from logstream.server.http.routes import bp, error_response
from logstream.server.services import Services

log = logging.getLogger("logstream")


def create_app(settings: Settings | None = None) -> Quart:
    """Build the app; its services start when it starts serving and stop when it stops."""
    settings = settings or Settings.from_env()
    app = Quart("logstream")
    # The API enforces LOGSTREAM_MAX_BODY_BYTES itself (core.read_limited), draining politely.
    app.config["MAX_CONTENT_LENGTH"] = None
    app.config["JSON_SORT_KEYS"] = False
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    app.register_blueprint(bp)
    app.register_blueprint(accounts_bp)
    app.register_blueprint(web_bp)
    # The hot routes (append, log stream) are answered in front of Quart: see asgi.py.
    # Every request first passes the checks of guard.py (Host, head sizes, HTTP version).
    hosts = HostRule.from_settings(settings.allowed_hosts, settings.host)
    app.asgi_app = FastPaths(  # type: ignore[method-assign,assignment]
        app.asgi_app,  # type: ignore[arg-type]  # Hypercorn's typed scopes are mappings
        lambda: app.extensions.get("logstream"),
        Guard(hosts),
        settings.max_body_bytes,
    )

    @app.after_request
    async def nosniff(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.while_serving
    async def lifecycle() -> AsyncGenerator[None, None]:
        services = await Services.start(settings)
        app.extensions["logstream"] = services
        sweeper = None
        if settings.retention is not None:
            from logstream.server.retention import sweep_forever

            sweeper = asyncio.create_task(sweep_forever(services), name="logstream-retention")
        if settings.auth == "open":
            log.warning(
                "LOGSTREAM_AUTH=open: anyone who can reach this server may read every log"
                " (set LOGSTREAM_AUTH=tokens to need tokens)"
            )
        else:
            live = await count_live_tokens(services.engine)
            log.info("LOGSTREAM_AUTH=tokens: reads need a token; %d usable tokens", live)
            if live == 0:
                log.warning(
                    "no API tokens yet: make one with"
                    " `logstream token create --role admin --name NAME`"
                )
        if settings.runner_token is None and settings.auth == "open":
            log.warning(
                "LOGSTREAM_RUNNER_TOKEN is not set: anyone who can reach this server may create"
                " jobs (running open)"
            )
        if hosts.allows_any:
            log.warning(
                "LOGSTREAM_ALLOWED_HOSTS is not set and the server listens on %s, not on"
                " loopback: it answers any Host header. List the names it is reached by to"
                " refuse others (DNS rebinding)",
                settings.host,
            )
        try:
            yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            await services.stop()

    @app.errorhandler(ApiError)
    async def on_api_error(error: ApiError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    async def on_http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 413:
            limit = settings.max_body_bytes
            return error_response(
                TooLarge(f"the request body is larger than {limit} bytes", limit=limit)
            )
        api_error = ApiError(error.description or error.name)
        api_error.status = status
        api_error.code = error.name.lower().replace(" ", "_")
        return error_response(api_error)

    @app.errorhandler(Exception)
    async def on_unexpected(error: Exception) -> Response:
        return error_response(error)  # 503 for a store failure, else a logged 500

    return app
