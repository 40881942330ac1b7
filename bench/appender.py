"""Helper process: a runner appending lines at a paced rate (absolute schedule).

`python -m bench.appender '<json args>'`: connects, waits until the monotonic time `t0_ns`,
then sends one POST /api/jobs/{id}/lines of `batch` lines every batch/rate seconds (batch k is
due at t0 + k * interval; a late batch goes at once, so the schedule catches up when it can).
Sending stops at t0 + duration whatever was sent, so a runner that fell behind appends fewer
lines than asked: both are reported. Each line starts with "t=<monotonic ns of the send>" so
readers measure the latency from the append call. Prints one JSON line with the results.
With `nchan_channel` it publishes to nchan instead (bench/peer_nchan.py): each line of a batch
as its own message, stamped when sent, and a last `end` message for the finish.
"""

from __future__ import annotations

import time
from typing import Any

from .common import child_main, line_text, line_texts, ms_stats, self_cpu_seconds, sleep_until
from .httpc import HttpConnection, append_request
from .peer_nchan import PUBLISHED, end_message, publish_request


async def run(args: dict[str, Any]) -> dict[str, Any]:
    conn = await HttpConnection("127.0.0.1", args["port"], cafile=args.get("cafile")).connect()
    job = {"id": args["job_id"], "token": args["token"]}
    batch = int(args["batch"])
    interval = int(batch * 1e9 / args["rate"])
    t0 = int(args["t0_ns"])
    t_end = t0 + int(args["duration"] * 1e9)
    asked_batches = int(args["rate"] * args["duration"] / batch)
    next_no = int(args.get("first", 1))
    lags: list[int] = []
    rtts: list[int] = []
    errors: list[str] = []
    sent = appended = 0
    first_send = last_send = 0
    channel = args.get("nchan_channel")  # set: publish to nchan instead of logstream
    await sleep_until(t0)
    cpu0 = self_cpu_seconds()
    for k in range(asked_batches):
        due = t0 + k * interval
        now = await sleep_until(due)
        if now >= t_end:
            break
        if not first_send:
            first_send = now
        last_send = now
        lags.append(now - due)
        sent += 1
        if channel is None:
            conn.send(append_request(conn, job, line_texts(now, next_no, batch), next_no))
            status, body = await conn.answer()
            rtts.append(time.monotonic_ns() - now)
            if status == 200:
                appended += batch
                next_no += batch
            elif len(errors) < 10:
                errors.append(f"{status} {body[:200]!r}")
            continue
        for _ in range(batch):  # nchan: one message per line, each stamped when sent
            stamp = time.monotonic_ns()
            conn.send(publish_request(args["port"], channel, line_text(stamp, next_no)))
            status, body = await conn.answer()
            rtts.append(time.monotonic_ns() - stamp)
            if status in PUBLISHED:
                appended += 1
                next_no += 1
            else:
                if len(errors) < 10:
                    errors.append(f"{status} {body[:200]!r}")
                break
    if channel is not None:  # the runner's finish, as nchan's last message
        conn.send(publish_request(args["port"], channel, end_message(next_no - 1)))
        await conn.answer()
    cpu = self_cpu_seconds() - cpu0
    await conn.close()
    return {
        "asked_lines": asked_batches * batch,
        "appended_lines": appended,
        "batches_sent": sent,
        "last_line": next_no - 1,
        "errors": errors,
        "schedule_lag_ms": ms_stats(lags),
        "post_rtt_ms": ms_stats(rtts),
        "first_send_ns": first_send,
        "last_send_ns": last_send,
        "cpu_s": round(cpu, 3),
    }


def main() -> None:
    child_main(run)


if __name__ == "__main__":
    main()
