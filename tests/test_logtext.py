"""logstream.logtext: splitting output into lines, cleaning, decoding and cutting them."""

from __future__ import annotations

import random
import re

import pytest

from logstream import logtext

FFFD = "\ufffd"


@pytest.mark.parametrize(
    "chunk,lines",
    [
        ("", []),
        ("a", ["a"]),
        ("a\n", ["a"]),
        ("a\nb", ["a", "b"]),
        ("a\nb\n", ["a", "b"]),
        ("\n", [""]),
        ("\n\n", ["", ""]),
        ("a\n\nb\n", ["a", "", "b"]),
        ("a\r\nb\r\n", ["a", "b"]),
        ("a\r\nb", ["a", "b"]),
        ("a\nb\r\nc", ["a", "b", "c"]),
        ("\r\n", [""]),
        ("10%\r20%\r30%\n", ["10%\r20%\r30%"]),
        ("10%\r20%\r30%", ["10%\r20%\r30%"]),
        ("a\r\r\n", ["a\r"]),
        ("\ra\n", ["\ra"]),
        ("  lead\n\ttab\n", ["  lead", "\ttab"]),
        ("emoji 🚀\n中文\n", ["emoji 🚀", "中文"]),
        ("u2028\u2028x\n", ["u2028\u2028x"]),  # only LF (and CR LF) end a line
        ("nel\x85x\n", ["nel\x85x"]),
    ],
)
def test_split_chunk(chunk: str, lines: list[str]) -> None:
    assert logtext.split_chunk(chunk) == lines


def test_split_chunk_inverts_join_randomized() -> None:
    rng = random.Random(7)
    alphabet = ["a", " ", "\r", "\t", "é", "🚀", ":", "x"]
    for _ in range(500):
        lines = [
            "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
            for _ in range(rng.randrange(1, 10))
        ]
        # A CR right before the LF would be a CR LF line end; such lines cannot round-trip.
        lines = [line.rstrip("\r") for line in lines]
        assert logtext.split_chunk("\n".join(lines) + "\n") == lines
        assert logtext.split_chunk("\r\n".join(lines) + "\r\n") == lines


@pytest.mark.parametrize(
    "text,expected",
    [
        ("plain", "plain"),
        ("a\x00b", f"a{FFFD}b"),
        ("\x00\x00", FFFD * 2),
        ("lone \ud800 high", f"lone {FFFD} high"),
        ("lone \udfff low", f"lone {FFFD} low"),
        ("emoji 🚀 ok", "emoji 🚀 ok"),
        ("\x1b[31m\tred\r", "\x1b[31m\tred\r"),
        ("", ""),
    ],
)
def test_clean(text: str, expected: str) -> None:
    cleaned = logtext.clean(text)
    assert cleaned == expected
    cleaned.encode("utf-8")  # always storable


@pytest.mark.parametrize(
    "raw,expected",
    [
        (b"plain", "plain"),
        ("é🚀中".encode(), "é🚀中"),
        (b"bad \xff\xfe end", f"bad {FFFD}{FFFD} end"),
        (b"cut \xe2\x82", f"cut {FFFD}"),
        (b"\xc3(", f"{FFFD}("),
        (b"\xed\xa0\x80", FFFD * 3),  # an encoded surrogate is not UTF-8
        (b"a\x00b", "a\x00b"),  # NUL is valid UTF-8; clean() replaces it
        (b"", ""),
    ],
)
def test_decode(raw: bytes, expected: str) -> None:
    assert logtext.decode(raw) == expected


def test_cut_marker_text() -> None:
    assert logtext.cut_marker(5) == " [logstream: line cut, 5 more characters]"


@pytest.mark.parametrize("limit", [64, 100, 1000])
def test_cut_leaves_short_lines_alone(limit: int) -> None:
    for n in (0, 1, limit - 1, limit):
        text = "y" * n
        assert logtext.cut(text, limit) == (text, False)


def _check_cut(text: str, limit: int) -> None:
    got, was_cut = logtext.cut(text, limit)
    assert was_cut
    assert len(got) <= limit, (len(text), limit, len(got))
    match = re.search(r" \[logstream: line cut, (\d+) more characters\]$", got)
    assert match, got[-80:]
    kept = got[: match.start()]
    assert text.startswith(kept)
    assert len(kept) + int(match.group(1)) == len(text), "the marker must count what was dropped"
    assert len(kept) > 0


@pytest.mark.parametrize("limit", [64, 65, 100, 200, 1000, 65536])
def test_cut_never_exceeds_limit(limit: int) -> None:
    """Every length just over the limit (where the dropped count gains a digit) included."""
    for extra in list(range(1, 1200)) + [10**5, 10**6]:
        _check_cut("z" * (limit + extra), limit)


def test_cut_counts_characters_not_bytes() -> None:
    text = "🚀" * 200
    got, was_cut = logtext.cut(text, 100)
    assert was_cut and len(got) <= 100
    assert got.startswith("🚀" * 10)
    _check_cut(text, 100)


def test_split_chunk_keeps_a_final_lone_cr() -> None:
    """Regression: a chunk ending in CR without LF lost the CR (it is not half of a CR LF)."""
    assert logtext.split_chunk("progress 10%\r") == ["progress 10%\r"]
    assert logtext.split_chunk("a\r\nb 50%\r") == ["a", "b 50%\r"]
    assert logtext.split_chunk("a\r\n") == ["a"]
