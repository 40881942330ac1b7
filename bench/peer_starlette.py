"""The peer: a typical Python SSE service, for figures measured in the same run as logstream's.

`python -m bench.peer_starlette PORT` serves the parts of logstream's API the benchmarks use,
the way such a service is usually written: sse-starlette on uvicorn (uvloop, httptools, one
worker), lines kept in memory (nothing durable), one `asyncio.Condition` per job that every
reader waits on, one event written per line. This is the "typical Python SSE service" the
benchmark issue describes; it is not a logstream code path.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


class Job:
    def __init__(self, job_id: int, name: str) -> None:
        self.id = job_id
        self.name = name
        self.lines: list[str] = []
        self.status = "running"
        self.exit_code: int | None = None
        self.cond = asyncio.Condition()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "exit_code": self.exit_code,
            "line_count": len(self.lines),
            "token": "peer",
        }


JOBS: dict[int, Job] = {}
STREAMS = 0


async def create_job(request: Request) -> Response:
    body = await request.json()
    job = Job(len(JOBS) + 1, str(body.get("name", "job")))
    JOBS[job.id] = job
    return JSONResponse(job.to_json(), status_code=201)


async def show_job(request: Request) -> Response:
    job = JOBS.get(int(request.path_params["job_id"]))
    if job is None:
        return JSONResponse({"error": "not_found"}, status_code=404)
    return JSONResponse(job.to_json())


async def append(request: Request) -> Response:
    job = JOBS.get(int(request.path_params["job_id"]))
    if job is None:
        return JSONResponse({"error": "not_found"}, status_code=404)
    body = await request.json()
    texts = body["lines"]
    first = body.get("first") or len(job.lines) + 1
    if first > len(job.lines) + 1:
        return JSONResponse(
            {"error": "conflict", "expected_first": len(job.lines) + 1}, status_code=409
        )
    job.lines.extend(texts[len(job.lines) + 1 - first :])
    async with job.cond:
        job.cond.notify_all()
    return JSONResponse(
        {"first": first, "last": first + len(texts) - 1, "line_count": len(job.lines)}
    )


async def finish(request: Request) -> Response:
    job = JOBS[int(request.path_params["job_id"])]
    body = await request.json()
    job.status, job.exit_code = body["status"], body.get("exit_code")
    async with job.cond:
        job.cond.notify_all()
    return JSONResponse(job.to_json())


async def log(request: Request) -> Response:
    job = JOBS.get(int(request.path_params["job_id"]))
    if job is None:
        return JSONResponse({"error": "not_found"}, status_code=404)
    fmt = request.query_params.get("format")
    if fmt == "text" or (
        fmt is None and "text/event-stream" not in request.headers.get("accept", "")
    ):

        async def text() -> AsyncIterator[bytes]:
            for start in range(0, len(job.lines), 1000):
                yield ("\n".join(job.lines[start : start + 1000]) + "\n").encode()

        return StreamingResponse(text(), media_type="text/plain")
    last = request.headers.get("last-event-id")
    cursor = int(last) if last else int(request.query_params.get("after", 0))

    async def events() -> AsyncIterator[dict[str, Any]]:
        global STREAMS
        nonlocal cursor
        STREAMS += 1
        try:
            while True:
                async with job.cond:
                    await job.cond.wait_for(
                        lambda: len(job.lines) > cursor or job.status != "running"  # noqa: B023
                    )
                while cursor < len(job.lines):
                    cursor += 1
                    yield {"id": str(cursor), "data": job.lines[cursor - 1]}
                if job.status != "running" and cursor >= len(job.lines):
                    yield {
                        "id": str(cursor),
                        "event": "end",
                        "data": json.dumps(
                            {
                                "status": job.status,
                                "exit_code": job.exit_code,
                                "line_count": len(job.lines),
                            }
                        ),
                    }
                    return
        finally:
            STREAMS -= 1

    return EventSourceResponse(events(), sep="\n")


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True, "streams": STREAMS})


app = Starlette(
    routes=[
        Route("/api/jobs", create_job, methods=["POST"]),
        Route("/api/jobs/{job_id:int}", show_job),
        Route("/api/jobs/{job_id:int}/lines", append, methods=["POST"]),
        Route("/api/jobs/{job_id:int}/finish", finish, methods=["POST"]),
        Route("/api/jobs/{job_id:int}/log", log),
        Route("/healthz", healthz),
    ]
)


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        log_level="warning",
        backlog=4096,
        timeout_keep_alive=75,
    )
