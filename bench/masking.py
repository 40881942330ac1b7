"""What masking costs per line, beside what storing a line costs (in-process, no HTTP).

    .venv/bin/python -m bench.masking [--lines 1000] [--rounds 20]

Prints lines/s for `Masker.scan` of a batch of build-log lines (one in ten colored, none
holding a secret: the common case) with the token patterns alone, and with 10, 100 and 1,000
secret values, and for the same batch with one line in ten holding a secret; and, for
comparison, lines/s of a plain append of that batch through the writer on SQLite (a batch of
1,000 lines per transaction, as the runner sends them).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import string
import tempfile
import time
from pathlib import Path

from logstream.masking import PATTERNS, Masker


def batch(n: int, secret: str | None = None) -> list[str]:
    rng = random.Random(1)
    words = ["building", "target", "gcc", "-O2", "ok", "src/app/main.c", "PASS", "warning:"]
    lines = []
    for i in range(n):
        line = f"2026-12-01T12:00:{i % 60:02d} " + " ".join(rng.choices(words, k=8))
        if i % 10 == 0:
            line = f"\x1b[32m{line}\x1b[0m"
        if secret is not None and i % 10 == 5:
            line += f" token={secret}"
        lines.append(line)
    return lines


def rate(masker: Masker, lines: list[str], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        masker.scan(lines)
    return len(lines) * rounds / (time.perf_counter() - started)


async def append_rate(lines: list[str], rounds: int) -> float:
    from logstream.config import Settings
    from logstream.server.services import Services
    from logstream.server.store.migrate import upgrade

    with tempfile.TemporaryDirectory() as folder:
        settings = Settings.from_env(env={}, database_url=f"sqlite:///{Path(folder) / 'b.db'}")
        upgrade(settings.database_url)
        svc = await Services.start(settings)
        try:
            job, _token = await svc.writer.create_job("bench", {})
            started = time.perf_counter()
            for _ in range(rounds):
                await svc.writer.append(job.id, lines, None)
            return len(lines) * rounds / (time.perf_counter() - started)
        finally:
            await svc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(2)
    alphabet = string.ascii_letters + string.digits
    values = ["".join(rng.choices(alphabet, k=24)) for _ in range(1000)]
    lines = batch(args.lines)
    print(f"batches of {args.lines} lines, {args.rounds} rounds")
    print(f"{'':44} {'lines/s':>12} {'us/line':>8}")

    def show(label: str, per_second: float) -> None:
        print(f"{label:44} {per_second:12,.0f} {1e6 / per_second:8.2f}")

    show("no masks, no patterns", rate(Masker((), ()), lines, args.rounds))
    show("token patterns only (the server's default)", rate(Masker(), lines, args.rounds))
    for n in (10, 100, 1000):
        built = time.perf_counter()
        masker = Masker(values[:n], tuple(PATTERNS))
        took = time.perf_counter() - built
        show(f"{n} secrets + patterns (built in {took * 1000:.0f} ms)", rate(masker, lines, 5))
    with_hits = batch(args.lines, values[0])
    show("10 secrets, one line in ten holds one", rate(Masker(values[:10]), with_hits, 5))
    show("plain append through the writer (SQLite)", asyncio.run(append_rate(lines, args.rounds)))


if __name__ == "__main__":
    main()
