"""What a log line may hold: splitting chunks of output into lines, cleaning and cutting them.

Pure functions, shared by the API (server side) and the runner client.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean(text: str) -> str:
    """Replace what no backend can store (NUL, lone surrogates) with U+FFFD.

    Returns `text` itself when there is nothing to replace (callers test identity).
    """
    if text.isascii():  # O(1) in CPython: no surrogate possible
        return text.replace("\x00", REPLACEMENT) if "\x00" in text else text
    if "\x00" in text or _has_surrogate(text):
        return _UNSTORABLE.sub(REPLACEMENT, text)
    return text


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def decode(body: bytes) -> str:
    """Decode output bytes as UTF-8; invalid sequences become U+FFFD rather than an error."""
    return body.decode("utf-8", errors="replace")


def split_chunk(text: str) -> list[str]:
    """Split a chunk of output into lines: LF or CR LF ends a line; a lone CR stays in its line.

    A final line without a line end still counts as a line, and keeps a trailing CR (with no
    LF after it, it is a lone CR, e.g. a progress bar's last redraw); an empty chunk has no lines.
    """
    if not text:
        return []
    parts = text.split("\n")
    tail = parts.pop()  # what follows the last LF: "" or an unterminated line
    lines = [p[:-1] if p.endswith("\r") else p for p in parts]
    if tail:
        lines.append(tail)
    return lines


def cut_marker(dropped: int) -> str:
    """The visible marker that ends a line stored cut."""
    return f" [logstream: line cut, {dropped} more characters]"


def cut(text: str, limit: int) -> tuple[str, bool]:
    """Return `text` cut to at most `limit` characters (marker included) and whether it was."""
    if len(text) <= limit:
        return text, False
    marker = cut_marker(len(text) - limit)
    keep = max(0, limit - len(marker))
    marker = cut_marker(len(text) - keep)
    # Keeping fewer characters makes the dropped count (and so the marker) longer; shrink
    # until the marker fits within the limit too.
    while keep > 0 and keep + len(marker) > limit:
        keep -= 1
        marker = cut_marker(len(text) - keep)
    return text[:keep] + marker, True
