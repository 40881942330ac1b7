"""The command `logstream run` wraps: spawned on pipes or a pseudo-terminal; signals forwarded.

Process groups. When we run non-interactively (stdin is not the terminal's foreground, as in
CI) the command gets its own process group, so a signal to `logstream` reaches the command and
everything it started, exactly once. Run interactively from a shell, the command stays in the
terminal's foreground group so it can still read the keyboard; Ctrl-C then reaches it straight
from the terminal, so the first SIGINT is not forwarded again (a second one is).

With `tty=True` the command writes to a pseudo-terminal (so tools that color only a terminal
still do); stdout and stderr then arrive merged, as on a real terminal. Output post-processing
(LF -> CR LF) is switched off so the bytes we pass on are the bytes the command wrote.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import IO

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class SpawnError(Exception):
    """The command could not be started; `exit_code` is what a shell would return (126/127)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_status(returncode: int) -> int:
    """A Popen return code as a shell reports it: 128+N for death by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _interactive() -> bool:
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


class Child:
    """One running command and the file descriptors its output arrives on."""

    def __init__(self, argv: list[str], *, tty: bool = False, env: dict[str, str] | None = None):
        self.argv = argv
        self.tty = tty
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.own_group = True
        self.outputs: list[tuple[int, IO[bytes] | None]] = []
        self._signals = 0

    def start(self) -> None:
        """Spawn the command; raise SpawnError if it cannot run."""
        self.own_group = self.tty or not _interactive()
        try:
            if self.tty:
                self._start_tty()
            else:
                self._start_pipes()
        except FileNotFoundError:
            raise SpawnError(f"{self.argv[0]}: command not found", 127) from None
        except PermissionError as error:
            raise SpawnError(f"{self.argv[0]}: {error.strerror or error}", 126) from None
        except OSError as error:
            raise SpawnError(f"{self.argv[0]}: {error.strerror or error}", 126) from None

    def _start_pipes(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            process_group=0 if self.own_group else None,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.outputs = [
            (self.proc.stdout.fileno(), sys.stdout.buffer),
            (self.proc.stderr.fileno(), sys.stderr.buffer),
        ]

    def _start_tty(self) -> None:
        import pty
        import termios

        master, slave = pty.openpty()
        try:
            attrs = termios.tcgetattr(slave)
            attrs[1] &= ~termios.OPOST  # pass the command's bytes on unchanged (no LF -> CR LF)
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            _copy_window_size(slave)
            self.proc = subprocess.Popen(
                self.argv, stdout=slave, stderr=slave, env=self.env, start_new_session=True
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self.outputs = [(master, sys.stdout.buffer)]

    def poll(self) -> int | None:
        """The return code if the command has exited."""
        assert self.proc is not None
        return self.proc.poll()

    def wait(self) -> int:
        """Wait for the command; return its shell-style exit status."""
        assert self.proc is not None
        status = exit_status(self.proc.wait())
        for fd, _ in self.outputs:
            if self.tty:
                _close_quietly(fd)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return status

    def forward(self, signum: int) -> None:
        """Pass a signal on (the third one on kills the command outright)."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self._signals += 1
        if self._signals >= 3:
            signum = signal.SIGKILL
        elif not self.own_group and signum == signal.SIGINT and self._signals == 1:
            return  # the terminal sent this Ctrl-C to the command too
        try:
            if self.own_group:
                os.killpg(self.proc.pid, signum)
            else:
                self.proc.send_signal(signum)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self, grace: float) -> None:
        """Stop the command (a cancel): SIGTERM to it and what it started, SIGKILL to what is
        left after `grace` seconds."""
        self._send(signal.SIGTERM)
        timer = threading.Timer(grace, self._send, (signal.SIGKILL,))
        timer.daemon = True
        timer.start()

    def _send(self, signum: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return  # gone (and reaped: its pid may belong to another process now)
        try:
            if self.own_group:
                os.killpg(self.proc.pid, signum)
            else:
                self.proc.send_signal(signum)
        except (ProcessLookupError, PermissionError):
            pass


def _copy_window_size(fd: int) -> None:
    import fcntl
    import struct
    import termios

    size = struct.pack("HHHH", 24, 120, 0, 0)
    for source in (sys.stdout, sys.stderr):
        try:
            if source.isatty():
                size = fcntl.ioctl(source.fileno(), termios.TIOCGWINSZ, size)
                break
        except (OSError, ValueError):
            continue
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
