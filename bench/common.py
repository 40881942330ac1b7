"""Shared helpers: CPU pinning, CPU time and memory of processes, percentiles, line texts."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import resource
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

SERVER_CORE = 0
LOADGEN_CORE = 1
NOFILE_WANTED = 65536
CLK_TCK = os.sysconf("SC_CLK_TCK")

LINE_BYTES = 80
# Deterministic filler after the "t=<ns> n=<no> " prefix, so a reader can check every byte.
PAD = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" * 2


def line_text(t_ns: int, no: int) -> bytes:
    """The text of line `no` sent at monotonic time `t_ns`: exactly 80 bytes, ASCII."""
    prefix = b"t=%d n=%d " % (t_ns, no)
    return prefix + PAD[: LINE_BYTES - len(prefix)]


def line_texts(t_ns: int, first: int, count: int) -> list[str]:
    """`count` line texts numbered from `first`, all stamped `t_ns`."""
    return [line_text(t_ns, first + i).decode("ascii") for i in range(count)]


# --- processes ------------------------------------------------------------------------------


def cores_available() -> set[int]:
    """The CPU cores this process may run on."""
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def can_pin() -> bool:
    """True when both the server core and the load-generator core exist."""
    return {SERVER_CORE, LOADGEN_CORE} <= cores_available() or (os.cpu_count() or 1) >= 2


def pin_self(core: int) -> bool:
    """Pin this process (and threads it starts later) to `core`; False when not possible."""
    try:
        os.sched_setaffinity(0, {core})
        return True
    except (AttributeError, OSError, ValueError):
        return False


def raise_nofile(wanted: int = NOFILE_WANTED) -> int:
    """Raise RLIMIT_NOFILE as far as allowed (root may raise the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (wanted, hard):
        if target == resource.RLIM_INFINITY:
            continue
        try:
            new_hard = hard if hard == resource.RLIM_INFINITY else max(hard, target)
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), new_hard))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this (child) process when the bench dies, even by SIGKILL."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except (OSError, AttributeError):
        pass


def child_setup(core: int | None) -> Callable[[], None]:
    """A preexec_fn: pin the child to `core`, give it many file descriptors, and make it
    end when the bench process dies."""

    def setup() -> None:
        if core is not None:
            pin_self(core)
        raise_nofile()
        _die_with_parent()

    return setup


def proc_cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process (all its threads) from /proc/<pid>/stat, in seconds."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return float("nan"), float("nan")
    fields = raw[raw.rfind(b")") + 2 :].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    return sum(proc_cpu_times(pid))


def proc_runq_wait_seconds(pid: int | str) -> float:
    """Time the threads of a process spent runnable but waiting for a CPU (schedstat), in s.

    Non-zero when other processes compete for the same core: a measure of how much the
    machine's other load disturbed a figure. Threads that ended are not counted.
    """
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return float("nan")
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def core_busy_seconds(core: int) -> float:
    """CPU time core `core` spent busy (not idle, not iowait) since boot, from /proc/stat."""
    prefix = f"cpu{core} ".encode()
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(prefix):
                    v = [int(x) for x in line.split()[1:]]
                    # user nice system idle iowait irq softirq steal (guest is inside user)
                    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK
    except (OSError, IndexError, ValueError):
        pass
    return float("nan")


def proc_rss_bytes(pid: int) -> int:
    """VmRSS of a process from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def self_cpu_seconds() -> float:
    """User + system CPU time of this process (all threads), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds spent by the server and by the load generator over one window."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.extra_loadgen = 0.0  # reported by helper processes for their own work
        self.server_s = 0.0
        self.loadgen_s = 0.0
        self.wall_s = 0.0
        self.server_wait_s = 0.0  # threads runnable but not running (others or siblings)
        self.other_core0_s = 0.0  # CPU time other processes took on the server's core
        self.loadgen_wait_s = 0.0
        self._t0 = 0.0
        self._s0 = 0.0
        self._l0 = 0.0
        self._sw0 = 0.0
        self._lw0 = 0.0
        self._su0 = self._ss0 = 0.0
        self._c0 = 0.0
        self.server_user_s = self.server_sys_s = 0.0

    def start(self) -> CpuMeter:
        self._t0 = time.monotonic()
        if self.server_pid:
            self._su0, self._ss0 = proc_cpu_times(self.server_pid)
            self._s0 = self._su0 + self._ss0
            self._sw0 = proc_runq_wait_seconds(self.server_pid)
        self._l0 = self_cpu_seconds()
        self._lw0 = proc_runq_wait_seconds("self")
        self._c0 = core_busy_seconds(SERVER_CORE)
        return self

    def stop(self) -> CpuMeter:
        self.wall_s = time.monotonic() - self._t0
        if self.server_pid:
            user, system = proc_cpu_times(self.server_pid)
            self.server_user_s, self.server_sys_s = user - self._su0, system - self._ss0
            self.server_s = user + system - self._s0
            self.server_wait_s = proc_runq_wait_seconds(self.server_pid) - self._sw0
            # The server is pinned to its core: what else that core did was someone else's.
            self.other_core0_s = max(0.0, core_busy_seconds(SERVER_CORE) - self._c0 - self.server_s)
        self.loadgen_s = self_cpu_seconds() - self._l0 + self.extra_loadgen
        self.loadgen_wait_s = proc_runq_wait_seconds("self") - self._lw0
        return self

    def to_json(self) -> dict[str, float]:
        return {
            "wall_s": round(self.wall_s, 3),
            "server_cpu_s": round(self.server_s, 3),
            "server_user_s": round(self.server_user_s, 3),
            "server_sys_s": round(self.server_sys_s, 3),
            "loadgen_cpu_s": round(self.loadgen_s, 3),
            "server_runq_wait_s": round(self.server_wait_s, 3),
            "other_processes_on_server_core_s": round(self.other_core0_s, 3),
            "loadgen_runq_wait_s": round(self.loadgen_wait_s, 3),
        }


# --- numbers --------------------------------------------------------------------------------


def percentiles(
    values: Sequence[float], points: Sequence[float] = (50, 95, 99)
) -> dict[str, float]:
    """Nearest-rank percentiles plus max and count (values need not be sorted)."""
    if not values:
        return {"count": 0, **{f"p{p:g}": float("nan") for p in points}, "max": float("nan")}
    ordered = sorted(values)
    n = len(ordered)
    out: dict[str, float] = {"count": n}
    for p in points:
        rank = max(1, min(n, int(-(-p * n // 100))))
        out[f"p{p:g}"] = ordered[rank - 1]
    out["max"] = ordered[-1]
    return out


def ms(ns: float) -> float:
    """Nanoseconds to milliseconds (rounded to 0.01)."""
    return round(ns / 1e6, 2)


def ms_stats(ns_values: Sequence[int]) -> dict[str, float]:
    """Percentiles of nanosecond samples, in milliseconds."""
    stats = percentiles(ns_values)
    return {k: (v if k == "count" else ms(v)) for k, v in stats.items()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def install_uvloop() -> str:
    """Use uvloop for this process's event loops when it is installed; returns the loop name."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


async def sleep_until(due_ns: int) -> int:
    """Sleep until the monotonic clock reaches `due_ns` (no sleep if it has); returns now."""
    now = time.monotonic_ns()
    if now < due_ns:
        await asyncio.sleep((due_ns - now) / 1e9)
        now = time.monotonic_ns()
    return now


def child_main(run: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> None:
    """A helper process of the bench: JSON arguments in argv[1], run on uvloop when installed,
    its JSON result as one line on stdout."""
    args = json.loads(sys.argv[1])
    install_uvloop()
    result = asyncio.run(run(args))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


# --- results --------------------------------------------------------------------------------


@dataclasses.dataclass
class Figure:
    """One row of the final table."""

    scenario: str
    figure: str
    value: str
    target: str = ""
    met: bool | None = None
    server_cpu_s: float | None = None
    loadgen_cpu_s: float | None = None
    window_s: float | None = None  # the wall-clock window the CPU times were measured over
    other_core0_s: float | None = None  # CPU time other processes took on the server's core

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def fmt_int(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    return f"{value:,.0f}"


def fmt_ms(value: float) -> str:
    if value != value:
        return "n/a"
    return f"{value:,.1f} ms"
