"""The bench's nchan adapter: nchan's EventSource body, rewritten into logstream's event shape,
reaches the same counting and verifying readers (ids from each line's `n=` stamp, the runner's
last message as the `end` event), whatever the read boundaries."""

from __future__ import annotations

import pytest

from bench.common import line_text
from bench.peer_nchan import NchanSink, end_message
from bench.readers import SseCounter, SseVerifier


def nchan_body(numbers: list[int], end: int | None) -> bytes:
    """What nchan sends a subscriber: a comment, then `id: <time>:<seq>` / `data:` events."""
    out = [b": hi\n\n"]
    for seq, no in enumerate(numbers):
        out.append(b"id: 1796124724:%d\ndata: %s\n\n" % (seq, line_text(10_000 + no, no)))
    if end is not None:
        out.append(b"id: 1796124724:%d\ndata: %s\n\n" % (len(numbers), end_message(end)))
    return b"".join(out)


@pytest.mark.parametrize("reader", [SseCounter, SseVerifier])
@pytest.mark.parametrize("step", [7, 80, 1000, 10**6])
def test_whole_stream_counts_every_line_and_ends(reader: type, step: int) -> None:
    sink = NchanSink(reader(None))
    body = nchan_body(list(range(1, 201)), end=200)
    for start in range(0, len(body), step):
        sink.feed(body[start : start + step], 20_000)
    assert sink.count == 200
    assert sink.end_seen and sink.end_id == 200
    assert sink.ok, sink.errors


@pytest.mark.parametrize("reader", [SseCounter, SseVerifier])
def test_a_missing_line_is_a_gap(reader: type) -> None:
    sink = NchanSink(reader(None))
    numbers = [n for n in range(1, 51) if n != 20]
    body = nchan_body(numbers, end=50)
    sink.feed(body[: len(body) // 2], 20_000)  # a read boundary before the gap...
    sink.feed(body[len(body) // 2 :], 20_000)
    assert not sink.ok
    assert sink.gaps + sink.bad >= 1  # a counter may see it as a count mismatch in one read


def test_verifier_checks_the_text_and_latency() -> None:
    sink = NchanSink(SseVerifier(None))
    sink.feed(nchan_body([1, 2, 3], end=None), 20_000)
    assert sink.count == 3 and not sink.end_seen
    assert sink.lat == [20_000 - 10_001, 20_000 - 10_002, 20_000 - 10_003]
    tampered = NchanSink(SseVerifier(None))
    tampered.feed(nchan_body([1, 2, 3], end=None).replace(b"abcdef", b"ABCDEF", 1), 20_000)
    assert tampered.bad_text == 1
