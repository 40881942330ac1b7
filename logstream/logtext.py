"""What a log line may hold: splitting chunks of output into lines, cleaning and cutting them.

Pure functions, shared by the API (server side) and the runner client.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

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


def decode(body: bytes, encoding: str = "utf-8") -> str:
    """Decode output bytes (UTF-8 unless told otherwise); invalid sequences become U+FFFD
    rather than an error."""
    return body.decode(encoding, errors="replace")


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


def clean_json(value: Any) -> Any:
    """A JSON value with every string (object keys too) cleaned as `clean` does and every
    non-finite float (NaN, Infinity: not JSON) made null, so it is storable and renders as
    strict JSON. Returns `value` itself when nothing changes (callers test identity)."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        items = [clean_json(item) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items
    if isinstance(value, dict):
        pairs = [
            (clean(key) if isinstance(key, str) else key, clean_json(item))
            for key, item in value.items()
        ]
        if all(
            new_key is key and new is item
            for (new_key, new), (key, item) in zip(pairs, value.items(), strict=True)
        ):
            return value
        # Keys that become equal once cleaned keep the last value, as duplicate keys in JSON do.
        return dict(pairs)
    return value


def json_bytes(payload: Any) -> bytes:
    """`payload` as compact, strict UTF-8 JSON (no NaN or Infinity, no lone surrogates).

    Whatever cannot be written so (a record stored before the input checks, say) is written
    cleaned by `clean_json` rather than failing, so nothing stored can break a page.
    """
    try:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except ValueError:  # UnicodeEncodeError (a lone surrogate) is one too
        text = json.dumps(
            clean_json(payload), separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
