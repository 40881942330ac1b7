"""The second peer: nchan, the nginx pub/sub module in C, one message per line.

`bench.run --peer` runs the fan-out and idle scenarios against it too, in the same run as
logstream, when nginx with the nchan module is installed (`scripts/bootstrap bench` installs
Debian's `nginx-light` and `libnginx-mod-nchan`). One nginx process (`master_process off`, so
the process the bench starts is the one that serves: pinned to the server core, its CPU time
and memory measured like logstream's), with

- `POST /pub/<channel>`: publish one message (one log line) — the runner;
- `GET /sub/<channel>`: an EventSource subscriber.

nchan has no jobs, numbered lines or end event, so the bench adapts around it rather than the
other way: a "job" is a channel name; the appender publishes each line as its own message; a
subscriber's stream (`id: <time>:<seq>` and `data: <line>` per message) is rewritten into
logstream's shape (`id: <n>` taken from the line's own `n=<n>` stamp) before the same counting
and verifying readers see it; the runner's "finish" is one last message `end n=<count>`, which
becomes the `end` event. Nothing is durable in nchan: messages live in shared memory.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from .common import SERVER_CORE, child_setup, line_text
from .readers import SseCounter
from .server import _RUNNING, ROOT, BenchServer

MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
LABEL = "peer: nchan (nginx, C, in memory)"

CONF = """\
load_module {module};
worker_processes 1;
master_process off;
daemon off;
pid {workdir}/nginx-{port}.pid;
error_log {log} warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 65536; }}
http {{
  access_log off;
  keepalive_requests 100000000;  # the runner publishes every line over one connection
  nchan_shared_memory_size 1024m;  # room for the whole log (the default drops old messages)
  client_body_temp_path {workdir}/nginx-body-{port};
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location ~ ^/pub/(\\w+)$ {{
      nchan_publisher;
      nchan_channel_id $1;
      nchan_message_buffer_length {buffer};
    }}
    location ~ ^/sub/(\\w+)$ {{
      nchan_subscriber eventsource;
      nchan_channel_id $1;
      nchan_subscriber_first_message oldest;
    }}
  }}
}}
"""


def available() -> str | None:
    """None when nginx with nchan can run here; else why not."""
    if shutil.which("nginx") is None:
        return "nginx is not installed"
    if not MODULE.exists():
        return f"{MODULE} is missing (Debian package libnginx-mod-nchan)"
    return None


class NchanServer(BenchServer):
    """nginx + nchan in one process, started and measured like a logstream server."""

    def __init__(
        self, workdir: Path, *, pin: bool = True, name: str = "nchan", buffer: int = 1_000_000
    ) -> None:
        super().__init__(workdir, pin=pin, name=name)
        self.buffer = buffer
        self.conf_path = workdir / f"{name}-{self.port}.conf"

    def start(self, timeout: float = 30.0) -> BenchServer:
        self.conf_path.write_text(
            CONF.format(
                module=MODULE,
                workdir=self.workdir,
                port=self.port,
                log=self.log_path,
                buffer=self.buffer,
            )
        )
        self.proc = subprocess.Popen(
            ["nginx", "-c", str(self.conf_path)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=child_setup(SERVER_CORE if self.pin else None),
        )
        _RUNNING.add(self)
        return self._wait_listening(timeout)

    def errors_logged(self) -> list[str]:
        return [
            line
            for line in self.logs(10**7).splitlines()
            if any(f"[{level}]" in line for level in ("error", "crit", "alert", "emerg"))
        ]


# nchan answers a publish 202 (queued, nobody listening) or 201 (delivered to subscribers).
PUBLISHED = (201, 202)

_CHANNELS = itertools.count(1)


def new_channel() -> dict[str, Any]:
    """A "job" for nchan: a fresh channel name (and no token)."""
    return {"id": f"j{next(_CHANNELS)}_{int(time.time() * 1000) % 10**9}", "token": ""}


def publish_request(port: int, channel: str, text: bytes) -> bytes:
    """The bytes of one publish (one message = one line)."""
    return (
        b"POST /pub/%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (channel.encode(), port, len(text), text)
    )


def end_message(line_count: int) -> bytes:
    """The runner's finish, as nchan's last message."""
    return b"end n=%d" % line_count


# One nchan event: its own id (dropped), then the line, whose stamp gives the line number.
_EVENT = re.compile(rb"id: [0-9]+:[0-9]+\ndata: (t=[0-9]+ n=([0-9]+) )")
_END = re.compile(rb"id: [0-9]+:[0-9]+\ndata: end n=([0-9]+)\n")


class NchanSink:
    """Rewrites an nchan EventSource body into logstream's event shape for `inner` (an
    SseCounter or SseVerifier): `id: <n>` from the line's stamp, the end message as the
    `end` event. Only whole events are passed on; the rest waits for the next read."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.rest = b""
        # A counter finds events by "\nid: ", so each block starts with a line feed (as after
        # the previous blank line); a verifier splits on blank lines and needs none.
        self.lead = b"\n" if isinstance(inner, SseCounter) else b""

    def feed(self, data: bytes, now: int) -> None:
        buf = self.rest + data if self.rest else data
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self.rest = buf
            return
        self.rest = buf[cut + 2 :]
        block = _EVENT.sub(rb"id: \2\ndata: \1", buf[: cut + 2])
        block = _END.sub(rb"id: \1\nevent: end\ndata: {}\n", block)
        self.inner.feed(self.lead + block, now)

    def __getattr__(self, name: str) -> Any:  # count, end_seen, gaps, ... of the reader
        return getattr(self.inner, name)


async def publish_log(conn: Any, port: int, channel: str, lines: int, window: int = 500) -> None:
    """Publish lines 1..`lines` and the end message, `window` requests pipelined at a time
    (an HttpConnection; nginx answers pipelined requests in order)."""
    no = 1
    while no <= lines + 1:
        batch = []
        for _ in range(window):
            if no > lines + 1:
                break
            text = line_text(time.monotonic_ns(), no) if no <= lines else end_message(lines)
            batch.append(publish_request(port, channel, text))
            no += 1
        conn.send(b"".join(batch))
        for _ in batch:
            status, body = await conn.answer(60)
            if status not in PUBLISHED:
                raise RuntimeError(f"publish failed: {status} {body[:200]!r}")
