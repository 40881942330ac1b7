"""h2: the fan-out over HTTP/2 + TLS, readers on the `h2` library (bench/h2readers.py).

The measurement is fanout.py's; only the readers' transport differs: `connections` TLS
connections (ALPN h2) carry the streams. The runner and control requests use HTTP/1.1 over TLS.
The certificate (from `trustme`) is made on first use and kept in the Context.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..readers import ReaderSet, Sink
from . import fanout
from .context import HOST, Context, Result


class H2Transport(fanout.Transport):
    """The streams spread over `connections` HTTP/2 connections over TLS."""

    def __init__(self, tls: dict[str, str], connections: int) -> None:
        self.tls = tls
        self.connections = connections

    def name(self, readers: int) -> str:
        return f"fanout_h2_{readers}"

    def label(self, readers: int, rate: int) -> str:
        conns = min(self.connections, readers)
        return (
            f"fan-out h2/TLS S={readers:,} R={rate:,}/s"
            f" ({conns} conn x {math.ceil(readers / conns)} streams)"
        )

    def mode(self, readers: int) -> str:
        conns = min(self.connections, readers)
        return f"{conns} TLS connections x {math.ceil(readers / conns)} streams"

    async def open(
        self, port: int, paths: list[str], sink_factory: Callable[[int, ReaderSet], Any]
    ) -> tuple[ReaderSet, list[Any], list[Sink], float]:
        from ..h2readers import client_context, open_h2_streams

        assert self.tls is not None
        return await open_h2_streams(
            HOST,
            port,
            client_context(self.tls["cafile"]),
            paths,
            sink_factory,
            min(self.connections, len(paths)),
            timeout=60,
        )


async def run(
    ctx: Context,
    readers: int,
    rate: int,
    duration: float,
    *,
    connections: int = 10,
    full_readers: int | None = None,
    batch: int = 10,
    p99_target_ms: float | None = None,
) -> Result:
    """S readers over `connections` HTTP/2 connections tail one job (see fanout.run)."""
    if ctx.tls is None:
        ctx.tls = make_tls(ctx.workdir)
    return await fanout.run(
        ctx,
        readers,
        rate,
        duration,
        full_readers=full_readers,
        batch=batch,
        p99_target_ms=p99_target_ms,
        transport=H2Transport(ctx.tls, connections),
    )


def make_tls(workdir: Path) -> dict[str, str]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, cafile = (workdir / "cert.pem", workdir / "key.pem", workdir / "ca.pem")
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    return {"certfile": str(certfile), "keyfile": str(keyfile), "cafile": str(cafile)}
