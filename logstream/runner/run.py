"""`logstream run` and `logstream push`: open a job, pump output into it, say what did not arrive.

The job's write token lives only in this process: it is never printed, logged or passed to the
command (which gets LOGSTREAM_JOB_ID and LOGSTREAM_JOB_URL instead). The one exception is the
file `run` leaves when the server never took the output (mode 0600, its path printed), which
`logstream resend FILE` delivers later.

A log server that is away never breaks the build: `run` runs the command even when no job
could be created at start (the delivery keeps trying in the background), waits a short,
bounded time after the command exits, and exits with the command's own status.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from logstream import masking
from logstream.masking import Masker
from logstream.runner.child import Child, SpawnError
from logstream.runner.client import Client, ClientError
from logstream.runner.delivery import KEEPALIVE, Delivery, Pump, SignalState, Warn
from logstream.runner.outbox import Spool

#: `run` exits with this when logstream itself fails before the command starts (as `env` does).
EXIT_ERROR = 125
#: How long job creation retries a server that is momentarily away (seconds, roughly).
CREATE_ATTEMPTS = 3
#: After a cancel, seconds between SIGTERM and SIGKILL.
CANCEL_GRACE = 10.0


class Cancel:
    """A cancel from the server: heard by the delivery thread, carried out on the command."""

    def __init__(self, warn: Warn, spool: Spool, grace: float) -> None:
        self.warn = warn
        self.spool = spool
        self.grace = grace
        self.requested = False
        self._child: Child | None = None
        self._lock = threading.Lock()

    def request(self) -> None:
        """The server says the job was canceled (delivery thread): stop the command."""
        with self._lock:
            if self.requested:
                return
            self.requested = True
            child = self._child
        why = (
            f"the job was canceled on the server; stopping the command (SIGTERM, SIGKILL"
            f" after {self.grace:g} s)"
        )
        self.warn(why)
        self.spool.add([f"logstream: {why}"])
        if child is not None:
            child.terminate(self.grace)

    def attach(self, child: Child) -> None:
        """The command runs (main thread); a cancel heard before this stops it now."""
        with self._lock:
            self._child = child
            requested = self.requested
        if requested:
            child.terminate(self.grace)


@dataclasses.dataclass(frozen=True)
class MaskOptions:
    """What `run` and `push` mask: variables named (--mask-env), variables whose names match
    `env_patterns`, and the token formats `patterns` names (logstream.masking.PATTERNS)."""

    names: Sequence[str] = ()
    env_patterns: Sequence[str] = masking.DEFAULT_ENV_PATTERNS
    patterns: Sequence[str] = tuple(masking.PATTERNS)


def build_masker(options: MaskOptions, env: Mapping[str, str], warn: Warn) -> Masker:
    """The Masker of a job: raises MaskError for a named variable too short to mask; a
    variable that merely matches a pattern and is too short is left out. Messages name
    variables, never show a value."""
    values: dict[str, str] = {}
    for name in options.names:
        value = env.get(name)
        if not value:
            warn(f"--mask-env {name}: the variable is not set; nothing to mask")
            continue
        masking.check_value(value, f"--mask-env {name}")
        values[name] = value
    for name, value in masking.env_secrets(env, options.env_patterns).items():
        if name in values:
            continue
        try:
            masking.check_value(value, name)
        except masking.MaskError:
            continue  # FOO_KEY=1 is hardly a secret (--mask-env FOO_KEY refuses it loudly)
        values[name] = value
    return Masker(values.values(), options.patterns)


def _masker(masks: MaskOptions | None, warn: Warn) -> Masker:
    try:
        return build_masker(masks or MaskOptions(), os.environ, warn)
    except masking.MaskError as error:
        raise ClientError(f"{error}; refusing to run without masking it") from None


def create_job(
    client: Client, name: str, meta: dict[str, Any], runner_token: str | None
) -> dict[str, Any]:
    """Create a job, retrying briefly when the server is momentarily unavailable."""
    delay = 0.3
    for attempt in range(CREATE_ATTEMPTS):
        try:
            job = client.create_job(name, meta, runner_token)
        except ClientError as error:
            status = getattr(error, "status", None)
            if status in (401, 403):
                raise ClientError(
                    f"{error}; set LOGSTREAM_RUNNER_TOKEN (or --runner-token) to the server's"
                    " runner token"
                ) from None
            if not error.retryable or attempt == CREATE_ATTEMPTS - 1:
                raise
            time.sleep(delay)
            delay *= 2
            continue
        if not isinstance(job.get("id"), int) or not isinstance(job.get("token"), str):
            raise ClientError(f"{client.server} did not answer with a job and its token")
        return job
    raise AssertionError("unreachable")


def job_name(argv: list[str]) -> str:
    """A default job name: the command line, on one line, at most 200 characters."""
    name = " ".join(shlex.join(argv).split())
    return name if len(name) <= 200 else name[:199] + "\u2026"


def command_meta(argv: list[str]) -> list[str] | str:
    """The command line for the job's meta: the list, or its start if it is very long."""
    if len(json.dumps(argv)) <= 8 * 1024:
        return argv
    return shlex.join(argv)[: 4 * 1024] + "\u2026"


def run_command(
    server: str,
    argv: list[str],
    *,
    name: str | None,
    runner_token: str | None,
    tty: bool,
    give_up: float,
    warn: Warn,
    require_server: bool = False,
    masks: MaskOptions | None = None,
    keepalive: float = KEEPALIVE,
    cancel_grace: float = CANCEL_GRACE,
) -> int:
    """Run `argv` as a job; return the command's exit status (non-zero when canceled).

    With `require_server`, a job that cannot be created at start raises ClientError (the CLI
    exits EXIT_ERROR without running the command); without, the command runs anyway. Secrets
    (`masks`) are masked in every line, the job's name and its meta before they are sent;
    a named variable too short to mask raises MaskError before anything runs.
    """
    masker = _masker(masks, warn)
    signals = SignalState()
    signals.install()  # from here on Ctrl-C ends the job as canceled, never leaves it running
    try:
        with Client(server) as client:
            options = _Options(give_up, require_server, keepalive, cancel_grace)
            return _run(client, argv, name, runner_token, tty, warn, signals, options, masker)
    finally:
        signals.restore()


@dataclasses.dataclass(frozen=True)
class _Options:
    give_up: float
    require_server: bool
    keepalive: float
    cancel_grace: float


def _run(
    client: Client,
    argv: list[str],
    name: str | None,
    runner_token: str | None,
    tty: bool,
    warn: Warn,
    signals: SignalState,
    options: _Options,
    masker: Masker,
) -> int:
    # The command line may hold a secret the shell expanded (curl -H "...$TOKEN").
    meta = masking.mask_json(masker, {"command": command_meta(argv), "host": socket.gethostname()})
    assert isinstance(meta, dict)
    title = masker.mask(name or job_name(argv))
    give_up = options.give_up
    spool = Spool(masker=masker)
    cancel = Cancel(warn, spool, options.cancel_grace)
    env = dict(os.environ)
    try:
        job = create_job(client, title, meta, runner_token)
    except ClientError as error:
        if options.require_server:
            raise
        warn(f"{error}; running the command anyway (its output is kept for the server)")
        delivery = Delivery(
            client,
            None,
            None,
            spool,
            warn,
            opener=lambda: client.create_job(title, meta, runner_token),
            keepalive=options.keepalive,
            on_cancel=cancel.request,
        )
    else:
        url = client.job_url(job["id"])
        warn(f"job {job['id']}: {url}")
        env.update(LOGSTREAM_JOB_ID=str(job["id"]), LOGSTREAM_JOB_URL=url)
        delivery = Delivery(
            client,
            job["id"],
            job["token"],
            spool,
            warn,
            keepalive=options.keepalive,
            on_cancel=cancel.request,
        )
    delivery.announce = True
    delivery.start()
    child = Child(argv, tty=tty, env=env)
    try:
        if signals.first is not None:
            raise SpawnError(f"{argv[0]}: interrupted before it started", 128 + signals.first)
        child.start()
    except SpawnError as error:
        warn(f"cannot run {error}")
        spool.add([f"logstream: cannot run {error}"])
        code, status = error.exit_code, "failed"
    else:
        signals.child = child
        cancel.attach(child)
        if signals.first is not None:
            child.forward(signals.first)  # it came while the command was starting
        pump = Pump(spool)
        for fd, echo in child.outputs:
            pump.add(fd, echo)
        pump.run(exited=lambda: child.poll() is not None)
        code = child.wait()
        status = "succeeded" if code == 0 else "failed"
    signals.delivery = delivery
    if signals.first is not None:
        status = "canceled"
        code = code or 128 + signals.first
    elif cancel.requested:
        status = "canceled"
        code = code or 128 + signal.SIGTERM  # canceled is never a success
    delivery.close((status, code), give_up)
    if delivery.problem is not None and spool.pending:
        warn(
            f"the command exited {code}; still trying to deliver {spool.pending} lines"
            f" (for up to {give_up:g} s; Ctrl-C stops now)"
        )
    delivery.wait()
    message = delivery.report(give_up)
    if message:
        warn(message)
    if not delivery.done and (delivery.error is None or delivery.job_id is None):
        kept = keep_undelivered(client.server, delivery, spool, title, meta, (status, code))
        warn(f"kept in {kept}; send it later with: logstream resend {kept}")
    return code


def keep_undelivered(
    server: str,
    delivery: Delivery,
    spool: Spool,
    name: str,
    meta: dict[str, Any],
    finish: tuple[str, int | None],
) -> Path:
    """Write what did not reach the server to a file `resend` can deliver later (mode 0600:
    it holds the job's write token). The folder is LOGSTREAM_OUTBOX_DIR, else the temp dir."""
    folder = os.environ.get("LOGSTREAM_OUTBOX_DIR") or tempfile.gettempdir()
    fd, path = tempfile.mkstemp(prefix="logstream-undelivered-", suffix=".json", dir=folder)
    record = {
        "server": server,
        "job_id": delivery.job_id,
        "token": delivery.token,
        "name": name,
        "meta": meta,
        "first": spool.first,
        "lines": spool.waiting(),
        "finish": list(finish),
    }
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(record, out, ensure_ascii=False)
    return Path(path)


def resend(
    server: str | None, path: Path, *, give_up: float, warn: Warn, runner_token: str | None
) -> int:
    """Deliver a file `run` kept (see keep_undelivered); 0 and the file removed once all did."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        lines = [str(line) for line in record["lines"]]
        status, exit_code = record["finish"]
        first = int(record["first"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ClientError(f"{path} is not a file `logstream run` kept: {error}") from None
    with Client(server or record["server"]) as client:
        name, meta = str(record.get("name") or "run"), dict(record.get("meta") or {})
        job_id, token = record.get("job_id"), record.get("token")
        spool = Spool(first if job_id is not None else 1)
        spool.add(lines)
        delivery = Delivery(
            client,
            job_id,
            token,
            spool,
            warn,
            opener=lambda: client.create_job(name, meta, runner_token),
        ).start()
        delivery.close((status, exit_code), give_up)
        delivery.wait()
        message = delivery.report(give_up)
        if message:
            warn(message)
            return 1
    path.unlink()
    warn(f"delivered {len(lines)} lines to job {delivery.job_id}; removed {path}")
    return 0


def push_input(
    server: str,
    job_id: int | None,
    *,
    name: str | None,
    token: str | None,
    runner_token: str | None,
    finish: str | None,
    exit_code: int | None,
    give_up: float,
    warn: Warn,
    fd: int = 0,
    masks: MaskOptions | None = None,
    keepalive: float = KEEPALIVE,
    echo: IO[bytes] | None = None,
) -> int:
    """Append what `fd` (stdin) carries to a job, finishing it at the end if asked; 0 if all did.
    Secrets (`masks`) are masked as `run_command` masks them. With `echo` (push --tee), what
    is read is also copied there as it arrives (as `run` shows the output, unmasked).

    A cancel on the server stops the reading: what was read is sent, the job finished as
    canceled, and the exit status is 1."""
    masker = _masker(masks, warn)
    with Client(server) as client:
        if job_id is None:
            meta = {"source": "push", "host": socket.gethostname()}
            job = create_job(client, masker.mask(name or "push"), meta, runner_token)
            job_id, token, first = job["id"], job["token"], 1
            warn(f"job {job_id}: {client.job_url(job_id)}")
        else:
            token = token or runner_token
            if not token:
                raise ClientError(
                    f"writing to job {job_id} needs its token: set LOGSTREAM_TOKEN (or --token)"
                    " or a runner token"
                )
            job = client.get_job(job_id, token=token)
            if job.get("status") != "running":
                raise ClientError(
                    f"job {job_id} is finished ({job.get('status')}); it takes no more lines"
                )
            first = int(job.get("line_count", 0)) + 1
        assert token is not None
        spool = Spool(first, masker=masker)
        delivery = Delivery(client, job_id, token, spool, warn, keepalive=keepalive).start()
        interrupted = False
        pump = Pump(spool)
        pump.add(fd, echo)
        try:
            pump.run(stop=lambda: delivery.error is not None or delivery.canceled)
        except KeyboardInterrupt:
            interrupted = True
        if delivery.error is not None:
            delivery.abort()  # the report says why
        ending = (finish, exit_code) if finish and not interrupted else None
        if delivery.canceled:
            warn(f"job {job_id} was canceled on the server; stopped reading the input")
            ending = ("canceled", None)
        delivery.close(ending, give_up)
        try:
            delivery.wait()
        except KeyboardInterrupt:
            delivery.abort("interrupted")
            interrupted = True
        message = delivery.report(give_up)
        if message:
            warn(message)
        if interrupted:
            return 130
        return 0 if delivery.done and not delivery.canceled else 1
