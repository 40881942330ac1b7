"""Dashboard on a huge log, in headless Chromium: prints figures, asserts nothing.

    .venv/bin/python bench/browser_bench.py [--lines 1000000]

Starts a server on a temporary SQLite file, fills a running job with N lines, opens the viewer
and measures: time to first paint, permalink jump, search jump to a line near the start, scroll
responsiveness (frame times while wheeling and while jumping around), tailing latency while
following, and what the page holds afterwards (JS heap, DOM nodes, cached pages).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.browser import append, fill, finish, launch_chromium  # noqa: E402
from support.server import ServerProcess, create_job  # noqa: E402

FRAME_PROBE = """
() => {
  window.__frames = [];
  let last = performance.now();
  const loop = (now) => { window.__frames.push(now - last); last = now;
                          if (window.__frames.length < 100000) requestAnimationFrame(loop); };
  requestAnimationFrame(loop);
}
"""


def text(n: int) -> str:
    if n == 42:
        return "\x1b[1;33mNEEDLE\x1b[0m: the line a search must find"
    colour = 31 + n % 7
    return f"\x1b[{colour}m[{n % 13:02d}]\x1b[0m step {n}: compiling module_{n % 997}.c ... ok"


def wait_visible(page, n: int, timeout: float = 60_000) -> float:
    started = time.perf_counter()
    page.wait_for_function(
        "n => window.__logstream.visibleLines().some(l => l.n === n && !l.pending)",
        arg=n,
        timeout=timeout,
        polling="raf",
    )
    return (time.perf_counter() - started) * 1000


def frame_stats(page) -> str:
    frames = page.evaluate("window.__frames.splice(0)")[1:]
    if not frames:
        return "no frames"
    frames.sort()
    p95 = frames[int(len(frames) * 0.95) - 1] if len(frames) > 1 else frames[0]
    long = sum(1 for f in frames if f > 50)
    return (
        f"{len(frames)} frames, median {statistics.median(frames):.1f} ms, "
        f"p95 {p95:.1f} ms, max {frames[-1]:.1f} ms, >50 ms: {long}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    total = args.lines

    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp))
        server.start()
        try:
            base = server.url
            job = create_job(base, "bench: huge log")
            started = time.perf_counter()
            fill(base, job, total, batch=10_000, text=text)
            print(f"filled {total:,} lines in {time.perf_counter() - started:.1f} s")

            with launch_chromium(["--enable-precise-memory-info"]) as browser:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))

                started = time.perf_counter()
                page.goto(f"{base}/jobs/{job['id']}")
                wait_visible(page, total)
                first_paint = (time.perf_counter() - started) * 1000
                state = page.evaluate("window.__logstream.state()")
                print(
                    f"open at the bottom: {first_paint:.0f} ms to the last line on screen "
                    f"(page's own first page: {state['firstPaintMs']:.0f} ms after job JSON)"
                )

                started = time.perf_counter()
                page.evaluate("location.hash = '#L500000'")
                wait_visible(page, 500_000)
                print(f"permalink #L500000: {(time.perf_counter() - started) * 1000:.0f} ms")

                page.evaluate(FRAME_PROBE)
                search = page.locator("#search")
                search.fill("needle")
                started = time.perf_counter()
                search.press("Enter")
                wait_visible(page, 42)
                print(
                    f"search 'needle' -> line 42 on screen: "
                    f"{(time.perf_counter() - started) * 1000:.0f} ms "
                    f"(server scans all {total:,} lines)"
                )
                print(f"  frames meanwhile: {frame_stats(page)}")

                page.locator("#log").hover()
                page.evaluate(FRAME_PROBE)
                started = time.perf_counter()
                for _ in range(120):
                    page.mouse.wheel(0, 600)
                    page.wait_for_timeout(16)
                print(f"wheel scrolling 120 x 600 px: {frame_stats(page)}")

                page.evaluate(FRAME_PROBE)
                jumps = []
                for n in (900_000, 10, 250_000, 750_001, 333_333, 999_000, 123_456, 600_000):
                    n = min(n, total)
                    started = time.perf_counter()
                    page.evaluate("n => window.__logstream.scrollToLine(n)", n)
                    wait_visible(page, n)
                    jumps.append((time.perf_counter() - started) * 1000)
                print(
                    f"8 far jumps (like dragging the scrollbar): median "
                    f"{statistics.median(jumps):.0f} ms, max {max(jumps):.0f} ms; "
                    f"frames {frame_stats(page)}"
                )

                # Tail while following: lines appended keep coming into view.
                page.evaluate("window.__logstream.follow()")
                wait_visible(page, total)
                latencies = []
                for i in range(10):
                    n = total + (i + 1) * 100
                    append(base, job, [f"tail line {k}" for k in range(n - 99, n + 1)])
                    started = time.perf_counter()
                    wait_visible(page, n)
                    latencies.append((time.perf_counter() - started) * 1000)
                print(
                    f"tailing 10 x 100 lines while following: visible after median "
                    f"{statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms"
                )

                state = page.evaluate("window.__logstream.state()")
                heap = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0")
                nodes = page.evaluate("document.getElementsByTagName('*').length")
                print(
                    f"page holds: {state['cachedPages']} cached pages (max {state['maxPages']}), "
                    f"{state['domRows']} rows in the DOM, {nodes} elements, "
                    f"JS heap {heap / 1e6:.1f} MB; last render {state['lastRenderMs']:.1f} ms"
                )
                if errors:
                    print(f"page errors: {errors}")
            finish(base, job)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
