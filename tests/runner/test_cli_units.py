"""The runner's pure parts: SSE parsing, line assembly, the spool, batching (no server)."""

from __future__ import annotations

import threading
from typing import Any

from logstream.runner.delivery import Delivery
from logstream.runner.outbox import LineAssembler, Spool
from logstream.sse import SSEParser, line_text


def parse(*chunks: bytes) -> tuple[SSEParser, list[tuple[str, str, str]]]:
    parser = SSEParser()
    events = []
    for chunk in chunks:
        events += [(e.type, e.data, e.last_event_id) for e in parser.feed(chunk)]
    return parser, events


# --- SSE ----------------------------------------------------------------------------------------


def test_sse_accepts_lf_cr_and_crlf_line_ends() -> None:
    _, events = parse(b"id: 1\ndata: a\n\nid: 2\rdata: b\r\rid: 3\r\ndata: c\r\n\r\n")
    assert events == [("message", "a", "1"), ("message", "b", "2"), ("message", "c", "3")]


def test_sse_crlf_split_across_chunks_is_one_line_end() -> None:
    _, events = parse(b"data: a\r", b"\n", b"\r", b"\ndata: b\n\n")
    assert events == [("message", "a", ""), ("message", "b", "")]


def test_sse_multibyte_character_split_across_chunks() -> None:
    body = "data: h\u00e9llo \u2603\n\n".encode()
    _, events = parse(*[body[i : i + 1] for i in range(len(body))])
    assert events == [("message", "h\u00e9llo \u2603", "")]


def test_sse_data_fields_join_with_lf_which_maps_back_to_cr() -> None:
    _, events = parse(b"id: 7\ndata: 10%\ndata: 20%\ndata:\n\n")
    assert events == [("message", "10%\n20%\n", "7")]
    assert line_text(events[0][1]) == "10%\r20%\r"


def test_sse_comments_retry_and_bom_dispatch_nothing() -> None:
    parser, events = parse(b"\xef\xbb\xbfretry: 2000\n\n: ping\n\n", b"id: 4\n\n")
    assert events == []
    assert parser.retry == 2000
    assert parser.last_event_id == "4"


def test_sse_id_is_kept_for_events_without_one_and_end_event_has_a_type() -> None:
    _, events = parse(b"id: 2\ndata: x\n\ndata: y\n\nid: 3\nevent: end\ndata: {}\n\n")
    assert events == [("message", "x", "2"), ("message", "y", "2"), ("end", "{}", "3")]


def test_sse_field_without_space_or_colon() -> None:
    _, events = parse(b"data:a\ndata\nevent:end\n\n")
    assert events == [("end", "a\n", "")]


def test_sse_empty_line_event_is_an_empty_string() -> None:
    _, events = parse(b"id: 1\ndata: \n\n")
    assert events == [("message", "", "1")]


# --- line assembly ------------------------------------------------------------------------------


def test_assembler_splits_like_the_server() -> None:
    a = LineAssembler()
    assert a.feed(b"one\r\ntwo\nthr", 0.0) == ["one", "two"]
    assert a.feed(b"ee\r50%\r", 0.1) == []
    assert a.feed(b"\n", 0.2) == ["three\r50%"]
    assert a.feed(b"tail", 0.3) == []
    assert a.close() == ["tail"]


def test_assembler_releases_a_waiting_partial_line_once() -> None:
    a = LineAssembler(wait=0.5)
    assert a.feed(b"Continue? ", 10.0) == []
    assert a.due() == 10.5
    assert a.release_due(10.4) == []
    assert a.release_due(10.5) == ["Continue? "]
    assert a.due() is None
    # the line end that closes the released text adds no empty line
    assert a.feed(b"\r", 11.0) == []
    assert a.feed(b"\nnext\n\n", 11.1) == ["next", ""]
    assert a.close() == []


def test_assembler_continues_after_release_as_a_new_line() -> None:
    a = LineAssembler(wait=0.5)
    a.feed(b"working...", 0.0)
    assert a.release_due(1.0) == ["working..."]
    assert a.feed(b" done\n", 2.0) == [" done"]


def test_assembler_utf8_split_and_invalid_bytes() -> None:
    a = LineAssembler()
    snow = "\u2603".encode()
    assert a.feed(snow[:1], 0) == []
    assert a.feed(snow[1:] + b"\xff\n", 0) == ["\u2603\ufffd"]


def test_assembler_releases_an_overlong_line_at_once() -> None:
    a = LineAssembler(max_chars=10)
    assert a.feed(b"x" * 12, 0) == ["x" * 12]


# --- spool --------------------------------------------------------------------------------------


def drain(spool: Spool, per_batch: int) -> list[tuple[int, list[str]]]:
    stop = threading.Event()
    batches = []
    spool.close()
    while (batch := spool.take(0.0, per_batch, 1 << 20, stop)) is not None:
        batches.append(batch)
        spool.ack(batch[0] + len(batch[1]) - 1)
    return batches


def test_spool_spills_to_disk_and_gives_lines_back_in_order() -> None:
    spool = Spool(first=5, memory_bytes=64)
    lines = [f"line {i} \u00e9\r" for i in range(200)]
    for i in range(0, 200, 7):
        spool.add(lines[i : i + 7])
    assert spool.spilled
    assert spool.pending == 200
    batches = drain(spool, 3)
    expected = 5
    for first, batch in batches:
        assert first == expected and batch
        expected += len(batch)
    assert [line for _, batch in batches for line in batch] == lines
    assert spool.pending == 0 and not spool.spilled


def test_spool_cleans_what_no_store_holds() -> None:
    spool = Spool()
    spool.add(["a\x00b"])
    assert drain(spool, 10) == [(1, ["a\ufffdb"])]


def test_spool_resends_unacknowledged_lines() -> None:
    spool = Spool()
    spool.add(["a", "b", "c"])
    stop = threading.Event()
    assert spool.take(0.0, 2, 1 << 20, stop) == (1, ["a", "b"])
    assert spool.take(0.0, 2, 1 << 20, stop) == (1, ["a", "b"])  # not acked: same again
    spool.ack(1)
    assert spool.take(0.0, 5, 1 << 20, stop) == (2, ["b", "c"])


# --- batching -----------------------------------------------------------------------------------


class FakeClient:
    server = "http://fake"

    def __init__(self, fail: int = 0) -> None:
        self.calls: list[tuple[int, int]] = []
        self.stored: list[str] = []
        self.finished: tuple[Any, ...] | None = None
        self.fail = fail

    def append(self, job_id: int, token: str, lines: list[str], first: int, timeout: Any) -> None:
        from logstream.runner.client import Unreachable

        self.calls.append((first, len(lines)))
        if self.fail:
            self.fail -= 1
            # the first attempt is stored but its answer is lost
            self.stored[first - 1 :] = lines
            raise Unreachable("lost")
        self.stored[first - 1 :] = lines

    def finish(self, *args: Any) -> None:
        self.finished = args


def test_a_chatty_command_costs_few_requests_and_retries_resend_the_same_lines() -> None:
    spool = Spool()
    client = FakeClient(fail=1)
    delivery = Delivery(client, 1, "t", spool, lambda message: None)  # type: ignore[arg-type]
    delivery.start()
    lines = [f"line {i}" for i in range(5000)]
    spool.add(lines)
    delivery.close(("succeeded", 0), give_up=10)
    assert delivery.wait()
    assert client.stored == lines
    assert len(client.calls) <= 7
    assert client.calls[0] == client.calls[1]  # the retry resends from the same `first`
    assert client.finished is not None and client.finished[2:5] == ("succeeded", 0, 5000)
