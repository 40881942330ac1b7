"""Helper process for the self-check: a minimal SSE server that costs almost nothing per reader.

`python -m bench.fake_sse '<json args>'` listens on 127.0.0.1:port, answers every GET with a
chunked `text/event-stream`, and once `readers` streams are open sends every stream the same
chunk of `batch` events every batch/rate seconds for `duration` seconds (ids from 1, texts in the
bench's format, stamped with the send time), then an `end` event. With it the bench measures
its own ceiling: how many events/s its readers can take on one core, whatever logstream does.
Prints one JSON line when done.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .common import child_main, line_text, self_cpu_seconds, sleep_until

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class Stream(asyncio.Protocol):
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.transport: Any = None
        self.buf = b""
        self.open = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.open:
            return
        self.buf += data
        if b"\r\n\r\n" in self.buf:
            self.open = True
            self.transport.write(HEAD + chunk(b"retry: 2000\n\n"))
            self.server.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.streams.discard(self)


class FakeServer:
    def __init__(self, args: dict[str, Any]) -> None:
        self.args = args
        self.streams: set[Stream] = set()
        self.all_open = asyncio.get_running_loop().create_future()

    def add(self, stream: Stream) -> None:
        self.streams.add(stream)
        if len(self.streams) >= self.args["readers"] and not self.all_open.done():
            self.all_open.set_result(None)

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: Stream(self), "127.0.0.1", self.args["port"], backlog=1024
        )
        print("listening", flush=True)
        await asyncio.wait_for(self.all_open, self.args.get("open_timeout", 120))
        await asyncio.sleep(0.5)
        batch = int(self.args["batch"])
        interval = int(batch * 1e9 / self.args["rate"])
        t0 = time.monotonic_ns()
        t_end = t0 + int(self.args["duration"] * 1e9)
        cpu0 = self_cpu_seconds()
        no = 1
        ticks = late = 0
        first_send = 0
        k = 0
        while True:
            due = t0 + k * interval
            now = await sleep_until(due)
            if now >= t_end:
                break
            if now - due > interval:
                late += 1
            payload = b"".join(
                b"id: %d\ndata: %s\n\n" % (no + i, line_text(now, no + i)) for i in range(batch)
            )
            data = chunk(payload)
            first_send = first_send or now
            for stream in self.streams:
                stream.transport.write(data)
            no += batch
            ticks += 1
            k += 1
        last = no - 1
        end = (
            b'id: %d\nevent: end\ndata: {"status":"succeeded","exit_code":0,'
            b'"line_count":%d}\n\n' % (last, last)
        )
        for stream in self.streams:
            stream.transport.write(chunk(end) + b"0\r\n\r\n")
        cpu = self_cpu_seconds() - cpu0
        deadline = time.monotonic() + 30
        while self.streams and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        server.close()
        return {
            "lines": last,
            "ticks": ticks,
            "late_ticks": late,
            "first_send_ns": first_send,
            "cpu_s": round(cpu, 3),
        }


async def main_async(args: dict[str, Any]) -> dict[str, Any]:
    return await FakeServer(args).run()


def main() -> None:
    child_main(main_async)


if __name__ == "__main__":
    main()
