"""logstream.sse, checked by round-tripping its bytes through the strict WHATWG parser."""

from __future__ import annotations

import json
import random

import pytest
from support.sse_oracle import SSEParser

from logstream import sse

TRICKY = [
    "",
    " ",
    "  two leading spaces",
    " one leading space",
    "trailing space ",
    "plain",
    "data: x",
    "data:x",
    ": comment-like",
    ":",
    "::",
    "id: 5",
    "id:",
    "event: end",
    "event:",
    "retry: 10",
    "retry: 0",
    "10%\r20%\r30%",
    "\r",
    "\r\r",
    "ends with cr\r",
    "\rstarts with cr",
    "tab\there",
    "\x1b[31mred\x1b[0m",
    "emoji 🚀✅👩‍💻",
    "构建 ビルド 빌드",
    "שלום مرحبا",
    "\ufeffbom at start",
    "u2028\u2028nel\x85vt\x0bff\x0c",
    "nul\x00inside",
    "x" * 5000,
]


def roundtrip(data: bytes) -> tuple[SSEParser, list]:  # type: ignore[type-arg]
    parser = SSEParser()
    return parser, parser.feed(data)


@pytest.mark.parametrize("text", TRICKY, ids=[repr(t)[:30] for t in TRICKY])
def test_line_event_roundtrips(text: str) -> None:
    raw = sse.line_event(7, text)
    assert b"\r" not in raw, "a raw CR inside a data line splits it (PITFALLS 10)"
    parser, events = roundtrip(raw)
    assert len(events) == 1
    (event,) = events
    assert event.type == "message"
    assert event.data == text.replace("\r", "\n")
    assert event.last_event_id == "7"


@pytest.mark.parametrize("text", TRICKY, ids=[repr(t)[:30] for t in TRICKY])
def test_line_event_roundtrips_byte_by_byte(text: str) -> None:
    """A chunk boundary anywhere (inside a UTF-8 sequence too) changes nothing."""
    raw = sse.line_event(123456, text)
    parser = SSEParser()
    events = []
    for i in range(len(raw)):
        events += parser.feed(raw[i : i + 1])
    assert [(e.type, e.data, e.last_event_id) for e in events] == [
        ("message", text.replace("\r", "\n"), "123456")
    ]


def test_line_event_exact_bytes() -> None:
    assert sse.line_event(1, "hello") == b"id: 1\ndata: hello\n\n"
    assert sse.line_event(2, "") == b"id: 2\ndata: \n\n"
    assert sse.line_event(3, "a\rb") == b"id: 3\ndata: a\ndata: b\n\n"
    assert sse.line_event(4, "é") == "id: 4\ndata: é\n\n".encode()


def test_line_event_keeps_one_data_field_per_cr_segment() -> None:
    raw = sse.line_event(1, "10%\r20%\r30%")
    assert raw.count(b"data: ") == 3


def test_line_events_concatenated_keep_numbering() -> None:
    texts = TRICKY * 3
    raw = b"".join(sse.line_event(n, t) for n, t in enumerate(texts, 1))
    _, events = roundtrip(raw)
    assert [e.last_event_id for e in events] == [str(n) for n in range(1, len(texts) + 1)]
    assert [e.data for e in events] == [t.replace("\r", "\n") for t in texts]


def test_no_bom_per_event() -> None:
    raw = b"".join(sse.line_event(n, "x") for n in range(1, 4))
    assert b"\xef\xbb\xbf" not in raw


def test_named_event_with_id() -> None:
    payload = {"status": "succeeded", "exit_code": 0, "line_count": 12}
    raw = sse.named_event("end", payload, event_id=12)
    parser, events = roundtrip(raw)
    assert len(events) == 1
    assert events[0].type == "end"
    assert json.loads(events[0].data) == payload
    assert events[0].last_event_id == "12"
    assert b"\r" not in raw


def test_named_event_without_id_keeps_previous_id() -> None:
    raw = sse.line_event(5, "x") + sse.named_event("status", {"a": 1})
    _, events = roundtrip(raw)
    assert [(e.type, e.last_event_id) for e in events] == [("message", "5"), ("status", "5")]
    assert b"id: \n" not in raw and b"id:\n" not in raw


def test_named_event_payload_with_line_ends_stays_one_data_field() -> None:
    payload = {"msg": "a\nb\rc\r\nd", "emoji": "🚀", "nested": [1, None, True]}
    raw = sse.named_event("info", payload)
    assert raw.count(b"data:") == 1
    _, events = roundtrip(raw)
    assert json.loads(events[0].data) == payload


def test_named_event_name_with_line_ends_is_folded() -> None:
    raw = sse.named_event("a\nb\rc", 1)
    _, events = roundtrip(raw)
    assert len(events) == 1
    assert events[0].type == "a b c"
    assert events[0].data == "1"


@pytest.mark.parametrize("text", ["ping", "", "data: x", "a\nb", "a\rb\r\nc", "id: 9"])
def test_comment_dispatches_nothing(text: str) -> None:
    raw = sse.comment(text)
    parser, events = roundtrip(raw)
    assert events == []
    assert parser.last_event_id == ""
    assert len(parser.comments) == 1
    assert parser.comments[0].strip() == text.replace("\r", " ").replace("\n", " ").strip()


def test_comment_between_events_does_not_disturb_them() -> None:
    raw = sse.line_event(1, "a") + sse.comment("ping") + sse.line_event(2, "b")
    parser, events = roundtrip(raw)
    assert [(e.data, e.last_event_id) for e in events] == [("a", "1"), ("b", "2")]
    assert [c.strip() for c in parser.comments] == ["ping"]


@pytest.mark.parametrize("ms,expected", [(2000, 2000), (0, 0), (1, 1), (-5, 0), (10**9, 10**9)])
def test_retry(ms: int, expected: int) -> None:
    raw = sse.retry(ms)
    parser, events = roundtrip(raw)
    assert events == []
    assert parser.retry == expected
    value = raw.decode().split(":", 1)[1].strip()
    assert value.isascii() and value.isdigit()


def test_retry_does_not_swallow_following_event() -> None:
    raw = sse.retry(1500) + sse.line_event(1, "first")
    parser, events = roundtrip(raw)
    assert parser.retry == 1500
    assert [(e.data, e.last_event_id) for e in events] == [("first", "1")]


@pytest.mark.parametrize(
    "value,expected",
    [
        (None, None),
        ("0", 0),
        ("5", 5),
        ("  17  ", 17),
        ("000123", 123),
        ("123456789012345678", 123456789012345678),
        ("", None),
        ("   ", None),
        ("abc", None),
        ("-1", None),
        ("+1", None),
        ("1.5", None),
        ("1e3", None),
        ("0x10", None),
        ("1 2", None),
        ("\u0663", None),  # ARABIC-INDIC DIGIT THREE: isdigit() but not ASCII
        ("\uff11", None),  # FULLWIDTH DIGIT ONE
        ("\u00b2", None),  # SUPERSCRIPT TWO
        ("1234567890123456789", None),  # too long to be a line number we hand out
    ],
)
def test_parse_last_event_id(value: str | None, expected: int | None) -> None:
    assert sse.parse_last_event_id(value) == expected


def test_last_event_id_roundtrip_through_parser() -> None:
    rng = random.Random(1234)
    for _ in range(200):
        n = rng.randrange(0, 10**15)
        parser, events = roundtrip(sse.line_event(n, "x"))
        assert sse.parse_last_event_id(parser.last_event_id) == n


ALPHABET = [
    "a",
    "b",
    " ",
    ":",
    "\r",
    "\t",
    "\x1b",
    "é",
    "🚀",
    "中",
    "\u200b",
    "\ufeff",
    "\x00",
    "\x85",
    "\u2028",
    "data",
    "id",
    "event",
    "retry",
    "\\",
    '"',
]


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 40)))


def test_randomized_streams_roundtrip() -> None:
    """Seeded random lines, random chunking, comments and retries mixed in: every line
    arrives once, in order, with its number and CR turned into LF."""
    rng = random.Random(20240601)
    for _ in range(200):
        texts = [random_text(rng) for _ in range(rng.randrange(1, 15))]
        parts = [sse.retry(rng.randrange(0, 5000))]
        for n, text in enumerate(texts, 1):
            if rng.random() < 0.2:
                parts.append(sse.comment(random_text(rng).replace("\x00", "")))
            parts.append(sse.line_event(n, text))
        parts.append(sse.named_event("end", {"line_count": len(texts)}, event_id=len(texts)))
        raw = b"".join(parts)
        assert b"\r" not in raw
        parser = SSEParser()
        events = []
        pos = 0
        while pos < len(raw):
            step = rng.randrange(1, 64)
            events += parser.feed(raw[pos : pos + step])
            pos += step
        assert [e.data for e in events[:-1]] == [t.replace("\r", "\n") for t in texts]
        assert [e.last_event_id for e in events[:-1]] == [str(n) for n in range(1, len(texts) + 1)]
        assert all(e.type == "message" for e in events[:-1])
        assert events[-1].type == "end"
        assert json.loads(events[-1].data) == {"line_count": len(texts)}


def test_line_events_batch_matches_line_event() -> None:
    """The batch encoder (replay path) must produce exactly the single-line encoding."""
    if not hasattr(sse, "line_events"):
        pytest.skip("sse.line_events not present in this version")
    rows = [(n, 1700000000000 + n, text) for n, text in enumerate(TRICKY, 1)]
    batch = sse.line_events(rows)
    assert batch == b"".join(sse.line_event(n, text) for n, _ts, text in rows)
    _, events = roundtrip(batch)
    assert [e.data for e in events] == [t.replace("\r", "\n") for t in TRICKY]
    assert sse.line_events([]) == b""
