"""Where the server's CPU goes: py-spy record of the server, summarized as text.

Used by `python -m bench.run --profile` (records the server during each measurement window to
bench/results/profile-<scenario>.txt in py-spy's raw collapsed-stack format), or by hand:

    python -m bench.profile bench/results/profile-fanout_1000.txt [--top 20]

prints the functions with the most samples on-CPU at the top of the stack ("self"), the ones
most often anywhere in the stack ("total"), and self time per package. py-spy drops samples of
idle threads where it can tell; leaves that wait (epoll, thread pools' queues) are left out
here too, so the shares are of busy samples. Needs `pip install py-spy` (not a dependency).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from .common import LOADGEN_CORE, child_setup

# Leaf frames in which a thread waits rather than runs (py-spy's own idle detection does not
# work everywhere): the event loop's epoll_wait, thread pools and aiosqlite waiting for work.
IDLE_LEAVES = {
    "EpollSelector.select",
    "_worker",
    "_connection_worker_thread",
    "Condition.wait",
    "Event.wait",
    "Queue.get",
    "Thread._wait_for_tstate_lock",
    "Thread.join",
}
# Frames on every stack (start-up, the loop itself): left out of the "total" list.
BOILERPLATE = re.compile(
    r"^(Thread\.|_run_module_as_main|_run_code|<module>|Command\.|Group\.|Context\.|serve |"
    r"run |Runner\.run|BaseEventLoop\.(run_|_run_once)|Handle\._run|_WorkItem\.run)"
)
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def _py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


async def start_record(pid: int, out: Path, seconds: float) -> asyncio.subprocess.Process | None:
    """Start `py-spy record` of `pid` for `seconds` (None when py-spy is not installed)."""
    exe = _py_spy()
    if exe is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return await asyncio.create_subprocess_exec(
        exe,
        "record",
        "--format",
        "raw",
        "--rate",
        "100",
        "--nonblocking",
        "--threads",
        "--duration",
        str(max(1, int(seconds))),
        "--output",
        str(out),
        "--pid",
        str(pid),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        preexec_fn=child_setup(LOADGEN_CORE),
    )


async def finish_record(proc: asyncio.subprocess.Process, out: Path) -> dict[str, Any] | None:
    """Wait for the recording (bounded), then summarize it."""
    try:
        await asyncio.wait_for(proc.wait(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
    if not out.exists():
        return None
    summary = summarize(out.read_text(errors="replace"))
    summary["file"] = str(out)
    return summary


def _short(frame: str) -> tuple[str, str]:
    """('func (module path)', package) of one py-spy frame, without the line number."""
    match = FRAME.match(frame)
    if not match:
        return frame, "?"
    func, path = match.group("func"), match.group("file")
    for marker in ("site-packages/", "/lib/python3."):
        if marker in path:  # an absolute path (py-spy usually shortens them already)
            path = path.split(marker, 1)[1]
            if marker.startswith("/lib"):
                path = path.split("/", 1)[-1]
            break
    if "/logstream/" in path:
        path = "logstream/" + path.split("/logstream/", 1)[1]
    package = (
        path.split("/", 1)[0].removesuffix(".py") if "/" in path else (path.removesuffix(".py"))
    )
    return f"{func} ({path})", package


def _thread(frame: str) -> str | None:
    """The thread's name from py-spy's `--threads` frame ("thread (123): name"), else None."""
    if not frame.startswith("thread ("):
        return None
    name = frame.split(": ", 1)[-1]
    # Numbered pool threads are one kind of thread.
    return re.sub(r"_\d+$", "_N", re.sub(r"^Thread-\d+", "Thread-N", name))


def summarize(raw: str, top: int = 15) -> dict[str, Any]:
    """Self and total sample counts per function, and self samples per package."""
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = idle = busy = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        parts = stack.split(";")
        thread = _thread(parts[0])
        if thread is not None:
            parts = parts[1:] or ["(no Python frame)"]
        frames = [_short(f) for f in parts]
        leaf, package = frames[-1]
        if leaf.split(" (", 1)[0] in IDLE_LEAVES:
            idle += count
            continue
        busy += count
        if thread is not None:
            threads[thread] += count
        self_counts[leaf] += count
        packages[package] += count
        for name in {name for name, _ in frames if not BOILERPLATE.match(name)}:
            total_counts[name] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        if not busy:
            return []
        return [(name, round(100 * n / busy, 1)) for name, n in counter.most_common(top)]

    return {
        "samples": samples,
        "busy_samples": busy,
        "idle_samples": idle,
        "self_pct": share(self_counts),
        "total_pct": share(total_counts),
        "package_self_pct": share(packages),
        "thread_pct": share(threads),
    }


def render(summary: dict[str, Any]) -> str:
    lines = [
        f"{summary['busy_samples']} busy samples (of {summary['samples']}; waiting"
        " leaves such as epoll_wait left out; shares are of busy samples)"
    ]
    for key, title in (
        ("thread_pct", "samples by thread"),
        ("package_self_pct", "self time by package"),
        ("self_pct", "self time by function"),
        ("total_pct", "total time (anywhere on the stack)"),
    ):
        lines.append(f"  {title}:")
        lines.extend(f"    {pct:5.1f}%  {name}" for name, pct in summary[key])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    for path in args.files:
        print(f"== {path}")
        print(render(summarize(path.read_text(errors="replace"), args.top)))


if __name__ == "__main__":
    main()
