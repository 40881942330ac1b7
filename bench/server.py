"""A logstream server under test: `python -m logstream serve` in a subprocess pinned to core 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .common import SERVER_CORE, child_setup, free_port, proc_cpu_seconds, proc_rss_bytes

ROOT = Path(__file__).resolve().parent.parent

# Every server the bench started and has not stopped yet: stopped on exit, error or Ctrl-C.
_RUNNING: set[BenchServer] = set()


class BenchServer:
    """start() / stop(); `pid`, `port`, `cpu_seconds()`, `rss_bytes()`."""

    def __init__(
        self,
        workdir: Path,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        env: dict[str, str] | None = None,
        pin: bool = True,
        name: str = "server",
        module_args: list[str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.db_path = workdir / f"{name}.db"
        self.certfile = certfile
        self.keyfile = keyfile
        self.env = env or {}
        self.pin = pin
        self.module_args = module_args
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{name}-{self.port}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def tls(self) -> bool:
        return bool(self.certfile)

    def start(self, timeout: float = 30.0) -> BenchServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")}
        env.update({"LOGSTREAM_LOG_LEVEL": "warning"})
        env.update(self.env)
        args = [
            sys.executable,
            "-m",
            "logstream",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--database-url",
            f"sqlite:///{self.db_path}",
        ]
        if self.certfile and self.keyfile:
            args += ["--certfile", self.certfile, "--keyfile", self.keyfile]
        if self.module_args is not None:  # another server (bench.floor_app) on this port
            args = [sys.executable, "-m", *self.module_args, str(self.port)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                preexec_fn=child_setup(SERVER_CORE if self.pin else None),
            )
        _RUNNING.add(self)
        return self._wait_listening(timeout)

    def _wait_listening(self, timeout: float) -> BenchServer:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                _RUNNING.discard(self)
                raise RuntimeError(f"server exited early:\n{self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"server did not start in {timeout} s:\n{self.logs()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout`); safe to call twice."""
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.send_signal(sig)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        finally:
            self.proc = None
            _RUNNING.discard(self)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return proc_rss_bytes(self.pid)

    def logs(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def errors_logged(self) -> list[str]:
        """Lines of the server's log at ERROR level or above (tracebacks follow them)."""
        return [
            line
            for line in self.logs(10**7).splitlines()
            if " ERROR " in line or " CRITICAL " in line
        ]


def stop_all() -> None:
    """Stop every server still running (used on exit, error and Ctrl-C)."""
    for server in list(_RUNNING):
        try:
            server.stop(signal.SIGKILL, timeout=5)
        except Exception:  # best effort at exit
            pass
