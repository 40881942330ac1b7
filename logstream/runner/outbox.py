"""The runner's outbox: output bytes become numbered lines that wait here until the server has them.

`LineAssembler` turns one stream's bytes into lines the way the server's `split_chunk` does (LF
or CR LF ends a line; a lone CR stays in its line). A line still in progress (a prompt, a
progress bar) is released after a short wait instead of being held until its newline. That
release is final: the released text becomes a stored line of its own, and what the command
writes after it starts a new line. (A bare line end that merely closes a released line adds no
empty line.) This is the price of seeing a prompt live; the local terminal still shows the
output unchanged.

Both mask secrets (`logstream.masking`) before anything leaves the machine: the spool masks each
line as it is added (following `::add-mask::` lines), and the assembler, when it releases a line
in progress early, holds back a tail that could be the start of a secret (`hold`), so a secret
written in two parts still reaches the masker whole.

`Spool` numbers the lines and keeps those the server has not acknowledged: in memory up to a
limit, then in an unlinked temporary file, so a long outage costs disk, not memory, and no line.
"""

from __future__ import annotations

import codecs
import collections
import tempfile
import threading
import time
from collections.abc import Callable
from typing import IO

from logstream import logtext
from logstream.masking import Masker

#: Release a line in progress after it has waited this long (seconds).
PARTIAL_WAIT = 0.5
#: A line in progress this long (characters) is released at once; the server cuts it anyway.
MAX_LINE_CHARS = 256 * 1024
#: Unacknowledged lines kept in memory (bytes of UTF-8) before the rest spill to disk.
MEMORY_BYTES = 16 * 1024 * 1024


class LineAssembler:
    """Splits one output stream into lines; holds a line in progress for at most `wait` seconds."""

    def __init__(
        self,
        wait: float = PARTIAL_WAIT,
        max_chars: int = MAX_LINE_CHARS,
        hold: Callable[[str], int] | None = None,
    ) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._wait = wait
        self._hold = hold  # how much of a line in progress may be a secret's start
        self._max_chars = max_chars
        self._partial = ""
        self._since: float | None = None
        self._released = False  # the text before the current partial went out as a line early

    def feed(self, data: bytes, now: float) -> list[str]:
        """Add output bytes; return the lines they completed."""
        text = self._decoder.decode(data)
        if not text:
            return []
        parts = (self._partial + text).split("\n")
        self._partial = parts.pop()
        lines = [part.removesuffix("\r") for part in parts]
        if lines:
            if self._released and lines[0] == "":
                lines.pop(0)  # the line end of a line already released
            self._released = False
            self._since = now if self._partial else None
        elif self._partial:
            if self._partial != "\r":
                self._released = False
            if self._since is None:
                self._since = now
        if len(self._partial) >= self._max_chars:
            lines += self._release()
        return lines

    def due(self) -> float | None:
        """When the line in progress is to be released (monotonic time), or None."""
        return None if self._since is None else self._since + self._wait

    def release_due(self, now: float) -> list[str]:
        """Release the line in progress if it has waited long enough."""
        due = self.due()
        if due is None or now < due:
            return []
        return self._release()

    def close(self) -> list[str]:
        """End of the stream: a final line without a line end still counts."""
        self._partial += self._decoder.decode(b"", final=True)
        if not self._partial or (self._released and self._partial == "\r"):
            self._partial = ""
            return []
        lines = [self._partial.removesuffix("\r")]
        self._partial, self._since = "", None
        return lines

    def _release(self) -> list[str]:
        text = self._partial
        keep = self._hold(text) if self._hold is not None else 0
        self._since = None  # with a tail held back, the wait starts again with more output
        if keep >= len(text):
            return []  # all of it may start a secret: wait for more, or for the line's end
        self._partial = text[len(text) - keep :] if keep else ""
        text = text[: len(text) - keep].removesuffix("\r")  # it may be the first half of CR LF
        self._released = True
        return [text]


class Spool:
    """Numbered lines not yet acknowledged, oldest first; memory up to a limit, then a temp file."""

    def __init__(
        self, first: int = 1, memory_bytes: int = MEMORY_BYTES, masker: Masker | None = None
    ) -> None:
        self.cond = threading.Condition()
        self.masker = masker  # the job's masks so far (None: lines are taken as they are)
        self.first = first  # the number of the oldest unacknowledged line
        self.next = first  # the number the next added line gets
        self.closed = False
        self._memory_bytes = memory_bytes
        self._mem: collections.deque[str] = collections.deque()
        self._mem_size = 0
        self._file: IO[bytes] | None = None
        self._read_pos = 0
        self._file_lines = 0  # lines in the file not yet moved back to memory
        self._since: float | None = None  # when the oldest unsent line was added

    @property
    def pending(self) -> int:
        """How many lines wait for the server."""
        return self.next - self.first

    @property
    def spilled(self) -> bool:
        """True while some lines wait on disk."""
        return self._file_lines > 0

    def unsafe_tail(self, text: str) -> int:
        """How much of the end of a line in progress may start a secret (see LineAssembler)."""
        masker = self.masker
        return 0 if masker is None else masker.unsafe_tail(text)

    def add(self, lines: list[str]) -> None:
        """Append lines (cleaned of what no store can hold, then masked); wake the sender."""
        if not lines:
            return
        with self.cond:
            lines = [logtext.clean(line) for line in lines]
            if self.masker is not None:
                lines, self.masker = self.masker.scan(lines)
            for line in lines:
                size = len(line.encode("utf-8")) + 1
                if self._file_lines or (self._mem and self._mem_size + size > self._memory_bytes):
                    self._spill(line)
                else:
                    self._mem.append(line)
                    self._mem_size += size
            self.next += len(lines)
            if self._since is None:
                self._since = time.monotonic()
            self.cond.notify_all()

    def close(self) -> None:
        """No more lines will be added."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wake(self) -> None:
        """Wake a sender waiting in `take` (to notice an abort)."""
        with self.cond:
            self.cond.notify_all()

    def take(
        self,
        window: float,
        max_lines: int,
        max_bytes: int,
        stop: threading.Event,
        idle: float | None = None,
    ) -> tuple[int, list[str]] | None:
        """Wait for a batch (full, or its oldest line `window` old, or closed); None when done.

        With `idle`, an empty batch after that many seconds without a line (time for a
        keepalive)."""
        with self.cond:
            idle_until = None if idle is None else time.monotonic() + idle
            while not stop.is_set():
                if self.pending == 0:
                    if self.closed:
                        return None
                    if idle_until is None:
                        self.cond.wait()
                        continue
                    left = idle_until - time.monotonic()
                    if left <= 0:
                        return self.first, []
                    self.cond.wait(left)
                    continue
                assert self._since is not None
                left = self._since + window - time.monotonic()
                if left <= 0 or self.closed or self.pending >= max_lines:
                    return self.first, self._peek(max_lines, max_bytes)
                self.cond.wait(left)
            return None

    def waiting(self) -> list[str]:
        """Every line still waiting for the server, oldest first (to keep them in a file)."""
        with self.cond:
            lines = list(self._mem)
            if self._file is not None and self._file_lines:
                self._file.seek(self._read_pos)
                for _ in range(self._file_lines):
                    lines.append(self._file.readline()[:-1].decode("utf-8"))
            return lines

    def ack(self, last: int) -> None:
        """The server has every line up to `last`: forget them."""
        with self.cond:
            while self.first <= last and self.first < self.next:
                if not self._mem:
                    self._refill()
                line = self._mem.popleft()
                self._mem_size -= len(line.encode("utf-8")) + 1
                self.first += 1
            self._since = None if self.pending == 0 else self._since
            if not self._mem:
                self._refill()

    def _peek(self, max_lines: int, max_bytes: int) -> list[str]:
        if not self._mem:
            self._refill()
        batch: list[str] = []
        size = 0
        for line in self._mem:
            size += len(line) + 8
            if batch and (len(batch) >= max_lines or size > max_bytes):
                break
            batch.append(line)
        return batch

    def _spill(self, line: str) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="logstream-spool-")  # noqa: SIM115
        self._file.seek(0, 2)
        self._file.write(line.encode("utf-8") + b"\n")
        self._file_lines += 1

    def _refill(self) -> None:
        """Move lines from the file back to memory, up to half the memory budget."""
        if self._file is None or not self._file_lines:
            return
        self._file.seek(self._read_pos)
        while self._file_lines and (not self._mem or self._mem_size < self._memory_bytes // 2):
            raw = self._file.readline()
            line = raw[:-1].decode("utf-8")
            self._mem.append(line)
            self._mem_size += len(raw)
            self._file_lines -= 1
        self._read_pos = self._file.tell()
        if not self._file_lines:
            self._file.seek(0)
            self._file.truncate()
            self._read_pos = 0
