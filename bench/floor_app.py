"""The framework floor: an empty POST handler on the same Hypercorn set-up as logstream.

`python -m bench.floor_app quart|asgi PORT` serves, with logstream's own Hypercorn settings
and event loop, a handler that reads the request body and answers a small JSON body: `quart`
as a Quart route, `asgi` as a bare ASGI callable. What one request costs here is what any
append costs before logstream does anything, so the ingest figures can be read against it.
"""

from __future__ import annotations

import sys
from typing import Any

from hypercorn.asyncio import serve
from quart import Quart, request

from logstream.config import Settings
from logstream.server.run import hypercorn_config, loop_factory, run_loop

BODY = b'{"first":1,"last":1,"line_count":1}'


def quart_app() -> Quart:
    app = Quart("floor")

    @app.post("/api/jobs/<int:job_id>/lines")
    async def append(job_id: int) -> Any:
        await request.get_data()
        return {"first": 1, "last": 1, "line_count": 1}

    return app


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    settings = Settings(port=port, log_level="warning")
    app: Any = quart_app() if kind == "quart" else asgi_app
    run_loop(loop_factory(settings), serve(app, hypercorn_config(settings)))


if __name__ == "__main__":
    main()
