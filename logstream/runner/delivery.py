"""`logstream run` and `logstream push`: read output, number its lines, deliver them to a job.

Three parts, one thread each:

* the pump (main thread) reads the output file descriptors, echoes the raw bytes to the local
  terminal, and adds completed lines to the spool;
* the delivery thread takes batches from the spool (up to `BATCH_LINES`, or whatever arrived
  within `WINDOW` seconds of the oldest unsent line) and appends them with `first` set, so a
  retry after a lost answer stores nothing twice; it backs off while the server is away, keeps
  every line meanwhile (spilling to disk), and finishes the job once all lines are in;
* signal handlers (main thread) forward Ctrl-C and friends to the command.

While the output is silent the delivery thread sends a keepalive (an append of no lines) every
`keepalive` seconds, so the server does not end the job as lost. The answer to every append
and keepalive says whether the job was canceled on the server (`job_status: canceling`); the
delivery then calls `on_cancel` once (from its thread), and `run` stops the command.

After the output ends the delivery gets a bounded time (`give_up`) to finish; past it we say on
stderr exactly which lines did not reach the server, and still exit with the command's status.
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import IO, Any

from logstream.protocol import JOB_CANCELING, REASON_FINISHED
from logstream.runner.child import FORWARDED, Child
from logstream.runner.client import BATCH_BYTES, Client, ClientError
from logstream.runner.outbox import LineAssembler, Spool

WINDOW = 0.1
BATCH_LINES = 1000
#: Seconds of silent output between keepalives (the server's job timeout is far longer).
KEEPALIVE = 30.0
#: After the command exits, output still arriving (from its leftovers) is read this long.
LINGER = 0.25
MAX_LINGER = 3.0

Warn = Callable[[str], None]


class Pump:
    """Reads output fds to their end: echoes raw bytes, adds completed lines to a spool."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._sources: dict[int, tuple[LineAssembler, IO[bytes] | None]] = {}

    def add(self, fd: int, echo: IO[bytes] | None) -> None:
        """Read `fd`; copy what arrives to `echo` (if any)."""
        self._sources[fd] = (LineAssembler(hold=self.spool.unsafe_tail), echo)

    def run(
        self,
        exited: Callable[[], bool] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        """Pump until every fd ends, the command exited and went quiet, or `stop()` says so."""
        selector: selectors.BaseSelector
        selector = (
            selectors.PollSelector()
            if hasattr(selectors, "PollSelector")
            else (selectors.SelectSelector())
        )
        for fd in self._sources:
            selector.register(fd, selectors.EVENT_READ)
        open_fds = set(self._sources)
        exited_at: float | None = None
        last_data = time.monotonic()
        try:
            while open_fds:
                now = time.monotonic()
                dues = [d for a, _ in self._sources.values() if (d := a.due()) is not None]
                timeout = max(0.0, min(dues) - now) if dues else None
                if exited is not None or stop is not None:
                    timeout = 0.1 if timeout is None else min(timeout, 0.1)
                for key, _ in selector.select(timeout):
                    fd = int(key.fd)
                    try:
                        data = os.read(fd, 65536)
                    except OSError:
                        data = b""  # EIO: a pseudo-terminal whose last writer has gone
                    if not data:
                        selector.unregister(fd)
                        open_fds.discard(fd)
                        self.spool.add(self._sources[fd][0].close())
                        continue
                    last_data = time.monotonic()
                    self._echo(fd, data)
                    self.spool.add(self._sources[fd][0].feed(data, last_data))
                now = time.monotonic()
                for assembler, _ in self._sources.values():
                    self.spool.add(assembler.release_due(now))
                if stop is not None and stop():
                    break
                if exited is not None and exited_at is None and exited():
                    exited_at = now
                if exited_at is not None and (
                    now - last_data >= LINGER or now - exited_at >= MAX_LINGER
                ):
                    break
        finally:
            selector.close()
            for fd in open_fds:
                self.spool.add(self._sources[fd][0].close())

    def _echo(self, fd: int, data: bytes) -> None:
        assembler, echo = self._sources[fd]
        if echo is None:
            return
        try:
            echo.write(data)
            echo.flush()
        except (OSError, ValueError):
            self._sources[fd] = (assembler, None)  # the terminal went away; keep logging


class Delivery:
    """A thread that sends a spool's lines to one job, in order, then optionally finishes it."""

    def __init__(
        self,
        client: Client,
        job_id: int | None,
        token: str | None,
        spool: Spool,
        warn: Warn,
        *,
        opener: Callable[[], dict[str, Any]] | None = None,
        keepalive: float | None = KEEPALIVE,
        on_cancel: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        # No job yet (the server was away when the command started): `opener` creates it,
        # retried here in the background like any append, before the first batch is sent.
        self.job_id = job_id
        self.token = token
        self.opener = opener
        self.spool = spool
        self.warn = warn
        self.error: str | None = None  # a fault retrying cannot mend
        self.problem: str | None = None  # the last passing fault, while it lasts
        self.finished = False
        self.done = False
        self.announce = False  # warn about a fatal fault when it happens, not only at the end
        self.keepalive = keepalive  # seconds of silence between keepalives (None: never)
        self.on_cancel = on_cancel
        self.canceled = False  # the server said the job was canceled
        self._finish: tuple[str, int | None] | None = None
        self._deadline: float | None = None
        self._stop = threading.Event()
        self._stopped_by: str | None = None
        self._batch_lines = BATCH_LINES
        self.told_dropped = False  # the server's size limit was reported (once)
        self._thread = threading.Thread(target=self._run, name="logstream-delivery", daemon=True)

    def start(self) -> Delivery:
        """Start sending."""
        self._thread.start()
        return self

    def close(self, finish: tuple[str, int | None] | None, give_up: float) -> None:
        """No more lines; finish the job with (status, exit_code) if given; allow `give_up` s."""
        self._finish = finish
        self._deadline = time.monotonic() + give_up
        self.spool.close()

    def wait(self) -> bool:
        """Wait for the delivery to end (or its time to run out); True if all went through."""
        assert self._deadline is not None
        while self._thread.is_alive() and not self._stop.is_set():
            left = self._deadline - time.monotonic()
            if left <= 0:
                break
            self._thread.join(min(left, 0.2))
        self.abort()
        self._thread.join(2.0)
        return self.done

    def abort(self, reason: str | None = None) -> None:
        """Stop trying now (`reason` says why, for the report)."""
        if reason is not None and self._stopped_by is None:
            self._stopped_by = reason
        self._stop.set()
        self.spool.wake()

    def _timeout(self) -> float | None:
        if self._deadline is None:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            self.abort()
        return min(20.0, max(left, 0.1))

    def _open(self, backoff: float) -> float | None:
        """Create the job (retrying while the server is away); None if that cannot succeed."""
        assert self.opener is not None
        while not self._stop.is_set():
            try:
                job = self.opener()
            except ClientError as error:
                if not error.retryable:
                    self._fail(str(error))
                    return None
                backoff = self._pause(str(error), backoff)
                continue
            self.job_id, self.token = job["id"], job["token"]
            self.warn(f"job {self.job_id}: {self.client.job_url(job['id'])}")
            return self._recovered(backoff)
        return None

    def _run(self) -> None:
        backoff = 0.1
        if self.job_id is None:
            opened = self._open(backoff)
            if opened is None:
                return
            backoff = opened
        assert self.job_id is not None and self.token is not None
        while not self._stop.is_set():
            # While a cancel is being carried out, no keepalives: the answer is known.
            idle = None if self.canceled else self.keepalive
            batch = self.spool.take(WINDOW, self._batch_lines, BATCH_BYTES, self._stop, idle)
            if batch is None:
                break
            first, lines = batch
            try:
                if lines:
                    answer = self.client.append(
                        self.job_id, self.token, lines, first, self._timeout()
                    )
                else:
                    answer = self.client.keepalive(self.job_id, self.token, self._timeout())
            except ClientError as error:
                status = getattr(error, "status", None)
                if status == 413 and len(lines) > 1:
                    self._batch_lines = max(1, len(lines) // 2)
                    continue
                body = getattr(error, "body", {})
                if body.get("reason") == REASON_FINISHED and body.get("status") == "canceled":
                    self._canceled()  # the server ended it (its runner did not answer in time)
                if not error.retryable:
                    self._fail(str(error))
                    return
                backoff = self._pause(str(error), backoff)
                continue
            if answer and answer.get("job_status") == JOB_CANCELING:
                self._canceled()
            self.spool.ack(first + len(lines) - 1)
            self._note_dropped(answer)
            backoff = self._recovered(backoff)
        if self._stop.is_set() or self.spool.pending:
            return
        if self._finish is not None:
            status, exit_code = self._finish
            while not self._stop.is_set():
                try:
                    self.client.finish(
                        self.job_id,
                        self.token,
                        status,
                        exit_code,
                        self.spool.next - 1,
                        self._timeout(),
                    )
                except ClientError as error:
                    if not error.retryable:
                        self.error = str(error)
                        return
                    backoff = self._pause(str(error), backoff)
                    continue
                self._recovered(backoff)
                self.finished = True
                break
            else:
                return
        self.done = True

    def _note_dropped(self, answer: Any) -> None:
        """Say once that the server's size limit drops lines of this job (`dropped` in an
        append's answer); the command's own output is not affected."""
        dropped = answer.get("dropped") if isinstance(answer, dict) else None
        if self.told_dropped or not isinstance(dropped, dict):
            return
        self.told_dropped = True
        self.warn(
            f"job {self.job_id} passed the server's size limit of"
            f" {dropped.get('max_job_bytes')} bytes: its stored log keeps its first lines and"
            f" its latest ones; lines from {dropped.get('first')} on are dropped as it goes on"
            " (one marker line says which)"
        )

    def _canceled(self) -> None:
        if self.canceled:
            return
        self.canceled = True
        if self.on_cancel is not None:
            try:
                self.on_cancel()
            except Exception as error:  # stopping the command failed: say so, keep delivering
                self.warn(f"could not stop the command after the cancel: {error}")

    def _fail(self, error: str) -> None:
        self.error = error
        if self.announce and not self.spool.closed:
            self.warn(f"{error}; output from line {self.spool.first} on will not be delivered")

    def _pause(self, problem: str, backoff: float) -> float:
        if self.problem is None:
            self.warn(f"{problem}; keeping the output and retrying")
        self.problem = problem
        delay = backoff * random.uniform(0.8, 1.2)
        if self._deadline is not None:
            delay = min(delay, max(0.0, self._deadline - time.monotonic()))
        self._stop.wait(delay)
        return min(backoff * 2, 2.0)

    def _recovered(self, backoff: float) -> float:
        if self.problem is not None:
            self.warn(f"server reachable again; delivered up to line {self.spool.first - 1}")
            self.problem = None
        return 0.1

    def report(self, give_up: float) -> str | None:
        """One line on what did not reach the server, or None if everything did."""
        if self.done:
            return None
        why = self.error or self._stopped_by or f"gave up after {give_up:g} s"
        if self.error is None and self.problem is not None:
            why += f"; last error: {self.problem}"
        where = "the job (never created)" if self.job_id is None else f"job {self.job_id}"
        if self.spool.pending:
            first, last = self.spool.first, self.spool.next - 1
            count = last - first + 1
            span = f"line {first}" if count == 1 else f"lines {first}-{last} ({count} lines)"
            verb = "was" if count == 1 else "were"
            unfinished = " and the job was not finished" if self._finish is not None else ""
            server = self.client.server
            return f"{span} of {where} {verb} NOT delivered to {server}{unfinished}: {why}"
        if self._finish is not None and not self.finished:
            return (
                f"all lines of {where} reached {self.client.server}, but the job was NOT"
                f" finished: {why}"
            )
        return None


class SignalState:
    """Signals received while a command runs; forwards them to it."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.child: Child | None = None  # set once the command runs
        self.delivery: Delivery | None = None  # set once the command is done
        self.count = 0
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Take over SIGINT, SIGTERM and SIGHUP."""
        for signum in FORWARDED:
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Give the signals back."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.first is None:
            self.first = signum
        if self.delivery is not None:
            # The command is done; a signal now means "stop waiting for the server".
            self.delivery.abort(f"stopped by signal {signal.Signals(signum).name}")
        elif self.child is not None:
            self.child.forward(signum)
        elif self.count > 1:
            raise KeyboardInterrupt  # still creating the job: a second Ctrl-C gets out now
