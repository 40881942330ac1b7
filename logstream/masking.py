"""Masking secrets in log lines: one pure module, shared by the runner and the server.

A `Masker` is built from secret values and server-wide patterns. It masks one complete line
at a time (`mask`), and `scan` carries a job's state from line to line: `::add-mask::VALUE`
lines add a value (the line itself comes out masked), and the body of a multi-line private-key
block is masked between its BEGIN and END lines. A Masker is immutable: a change of state
gives a new Masker, so the server can tell what to persist and a cached one is never half
changed.

What a value is masked as (`variants`): the text itself; base64 (standard and URL-safe) at
each of the three alignments it can have inside a longer encoded string, plus its own padded
encoding; URL-encoded (upper and lower case hex, `+` or `%20` for spaces); JSON-escaped. A
value holding line ends is masked line by line (each line of it, and the encodings of the
whole value, which hold no line end). All variants of all values go into one regular
expression shaped as a trie (shared prefixes factored out), so a line costs one C-level scan
whatever the number of secrets; the patterns are alternatives of the same expression.

Escape sequences: a line holding ESC is matched on its visible text (CSI, OSC and two-byte
escapes stripped, the same escapes search strips), and each hit is replaced in the line
together with the escapes inside it, which are kept after the mask: a secret wrapped in color
codes, or with SGR codes between any of its characters, is masked, and search (which matches
the visible text) cannot find it either.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence

MASK = "***"
#: Values shorter than this are refused: masking them would mask common words and letters.
MIN_LENGTH = 6
ADD_MASK = "::add-mask::"

#: Environment variable names whose values `logstream run` masks unless told otherwise
#: (Buildkite's default list, plus *_KEY).
DEFAULT_ENV_PATTERNS = (
    "*_TOKEN",
    "*_SECRET",
    "*_PASSWORD",
    "*_KEY",
    "*_PRIVATE_KEY",
    "*_ACCESS_KEY",
    "*_SECRET_KEY",
    "*_CONNECTION_STRING",
)

#: Well-known token formats, masked everywhere unless turned off (LOGSTREAM_MASK_PATTERNS).
#: None starts with a word boundary: with one, the engine can no longer skip ahead to the
#: literal prefixes, and a line took 15 us instead of 1 (a token glued to a word is masked too).
PATTERNS: Mapping[str, str] = {
    "github": r"(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,255})",
    "gitlab": r"glpat-[A-Za-z0-9_\-]{20,}",
    "slack": r"xox[abeoprs]-[A-Za-z0-9\-]{10,}",
    "aws": r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
    # A block from its BEGIN marker to its END marker, or to the line's end: a whole block on
    # one line (JSON-escaped, say), or the first line of one over several lines, whose body
    # `Masker.scan` masks line by line.
    "private_key": r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:.*?-----END (?:[A-Z0-9]+ )*"
    r"PRIVATE KEY-----|.*)",
}
# What a line in progress may end with that could still become a pattern match (the runner
# holds such a tail back instead of releasing it early; see `Masker.unsafe_tail`).
_PATTERN_STARTS = (
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xoxa-",
    "xoxb-",
    "xoxe-",
    "xoxo-",
    "xoxp-",
    "xoxr-",
    "xoxs-",
    "AKIA",
    "ASIA",
    "ABIA",
    "ACCA",
)
_TOKEN_TAIL = re.compile(r"[A-Za-z0-9_\-]+\Z")

# The escapes stripped to get a line's visible text: the same as server/search.py's _ANSI
# (tests/test_masking.py checks they stay equal).
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")

_BEGIN_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_END_KEY = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_KEY_MARK = "PRIVATE KEY-----"


class MaskError(ValueError):
    """A value that cannot be masked (too short); `str()` says why, without the value."""


def check_value(value: str, what: str = "a mask value") -> None:
    """Refuse a value too short to mask (the message never shows the value)."""
    if len(value.strip()) < MIN_LENGTH:
        raise MaskError(
            f"{what} is shorter than {MIN_LENGTH} characters: masking it would hide every"
            " occurrence of those characters in the log"
        )


def pattern_names(setting: str) -> tuple[str, ...]:
    """The patterns a LOGSTREAM_MASK_PATTERNS value turns on: `all` (the default), `none`,
    or names separated by commas (github, gitlab, slack, aws, private_key)."""
    text = setting.strip().lower()
    if text in ("", "all", "default"):
        return tuple(PATTERNS)
    if text == "none":
        return ()
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in PATTERNS]
    if unknown:
        raise MaskError(
            f"unknown mask pattern {', '.join(unknown)}: choose from {', '.join(PATTERNS)},"
            " all or none"
        )
    return names


def env_secrets(
    env: Mapping[str, str], patterns: Sequence[str] = DEFAULT_ENV_PATTERNS
) -> dict[str, str]:
    """The variables of `env` whose names match `patterns` (glob, case-insensitive)."""
    upper = [pattern.upper() for pattern in patterns]
    return {
        name: value
        for name, value in env.items()
        if value and any(fnmatch.fnmatchcase(name.upper(), p) for p in upper)
    }


def _split_lines(value: str) -> list[str]:
    return [part.removesuffix("\r") for part in value.split("\n")]


def _base64_variants(raw: bytes) -> set[str]:
    """The base64 text `raw` shows inside any longer encoded string, at each alignment.

    With `o` bytes before it (o = 0, 1, 2 modulo 3), the encoded characters that depend only
    on `raw` run from ceil(8o / 6) to floor(8(o + n) / 6); the rest mix in unknown bytes.
    """
    found: set[str] = set()
    n = len(raw)
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii")
        start = -(-8 * offset // 6)
        stop = (8 * (offset + n)) // 6
        found.add(encoded[start:stop])
    found.add(base64.b64encode(raw).decode("ascii"))  # its own encoding, padding and all
    found |= {text.replace("+", "-").replace("/", "_") for text in found}
    found |= {text.rstrip("=") for text in found}
    return found


def _url_variants(value: str) -> set[str]:
    found = {
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote(value),
        urllib.parse.quote_plus(value),
        urllib.parse.quote_plus(value, safe="/"),
    }
    lower = {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text) for text in found}
    return found | lower


def _json_variants(value: str) -> set[str]:
    found = {
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    return found | {text.replace("/", "\\/") for text in found}


def variants(value: str) -> set[str]:
    """Every form `value` is masked in (see the module docstring); none shorter than
    MIN_LENGTH, none holding a line end."""
    found: set[str] = set()
    whole_encoded = _base64_variants(value.encode("utf-8")) | _url_variants(value)
    whole_encoded |= _json_variants(value)
    found |= whole_encoded
    for line in _split_lines(value):
        if len(line.strip()) < MIN_LENGTH:
            continue  # a short line of a multi-line value (its end, say) is left alone
        found.add(line)
        found |= _base64_variants(line.encode("utf-8")) | _url_variants(line)
        found |= _json_variants(line)
    return {text for text in found if len(text) >= MIN_LENGTH and "\n" not in text}


_Trie = dict[str, "_Trie"]


def _trie_regex(words: Iterable[str]) -> str:
    """One regular expression matching any of `words`, longest first, as a trie: at each
    position the engine follows one branch per character instead of trying every word."""
    trie: _Trie = {}
    end = ""  # the key marking that a word ends here (no character is the empty string)
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[end] = {}

    def emit(node: _Trie) -> str:
        ends = end in node
        branches = []
        for char in sorted(key for key in node if key != end):
            child = node[char]
            run = char
            while len(child) == 1 and end not in child:  # a chain: one literal run
                (char, child) = next(iter(child.items()))
                run += char
            branches.append(re.escape(run) + emit(child))
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if ends:
            return "(?:" + body + ")?"
        return body

    return emit(trie)


_Layer = tuple[frozenset[str], re.Pattern[str]]


def _compile(values: Iterable[str]) -> re.Pattern[str] | None:
    words: set[str] = set()
    for value in values:
        words |= variants(value)
    return re.compile(_trie_regex(words)) if words else None


def _layers_of(values: frozenset[str], patterns: Sequence[str]) -> tuple[_Layer, ...]:
    """The patterns and the values, each as an expression of its own: alone, each starts with
    literals, so the engine skips ahead over positions no alternative can start at (in one
    expression a line with 10 values took 6 us instead of 2.6)."""
    layers: list[_Layer] = []
    if patterns:
        layers.append((frozenset(), re.compile("|".join(PATTERNS[p] for p in patterns), re.S)))
    regex = _compile(values)
    if regex is not None:
        layers.append((values, regex))
    return tuple(layers)


#: Values added one by one (`::add-mask::` lines) go into a small expression of their own, so
#: adding one recompiles at most this many values instead of all of them (with 950 values a
#: full compile takes ~0.4 s); a full layer starts the next.
LAYER_VALUES = 64


class Masker:
    """Masks a job's secrets in its lines; immutable (changes give a new Masker)."""

    __slots__ = ("values", "patterns", "in_key", "_layers", "_regexes", "_prefixes")

    def __init__(
        self,
        values: Iterable[str] = (),
        patterns: Sequence[str] = tuple(PATTERNS),
        *,
        in_key: bool = False,
        _layers: tuple[_Layer, ...] | None = None,
    ) -> None:
        self.values = frozenset(values)
        self.patterns = tuple(patterns)
        self.in_key = in_key  # inside a multi-line private-key block
        if _layers is None:
            _layers = _layers_of(self.values, self.patterns)
        self._layers = _layers  # the patterns, the values, then values added later
        self._regexes = tuple(regex for _, regex in _layers)
        self._prefixes: frozenset[str] | None = None

    def __repr__(self) -> str:  # never the values
        return f"<Masker {len(self.values)} values, patterns {self.patterns}>"

    @property
    def active(self) -> bool:
        """Whether this Masker can change any line at all."""
        return bool(self._regexes) or self.in_key

    def with_values(self, values: Iterable[str]) -> Masker:
        """This Masker with more values (self when none is new)."""
        new = frozenset(values) - self.values
        if not new:
            return self
        layers = list(self._layers)
        if layers and layers[-1][0] and len(layers[-1][0]) < LAYER_VALUES:
            new |= layers.pop()[0]
        regex = _compile(new)
        assert regex is not None
        layers.append((new, regex))
        return Masker(self.values | new, self.patterns, in_key=self.in_key, _layers=tuple(layers))

    def with_key_state(self, in_key: bool) -> Masker:
        """This Masker inside (or outside) a private-key block."""
        if in_key == self.in_key:
            return self
        return Masker(self.values, self.patterns, in_key=in_key, _layers=self._layers)

    def _search(self, text: str) -> bool:
        return any(regex.search(text) is not None for regex in self._regexes)

    def mask(self, line: str) -> str:
        """`line` with every secret replaced by MASK (`line` itself when there is none)."""
        if not self._regexes:
            return line
        if "\x1b" not in line:
            if not self._search(line):
                return line
            return _replace(line, _spans(self._regexes, line))
        return self._mask_visible(line)

    def _mask_visible(self, line: str) -> str:
        visible_parts: list[str] = []
        index: list[int] = []  # index[i]: where visible character i sits in `line`
        pos = 0
        for match in ANSI.finditer(line):
            visible_parts.append(line[pos : match.start()])
            index.extend(range(pos, match.start()))
            pos = match.end()
        visible_parts.append(line[pos:])
        index.extend(range(pos, len(line)))
        visible = "".join(visible_parts)
        if not self._search(visible):
            return line
        spans = [
            (index[start], index[stop - 1] + 1) for start, stop in _spans(self._regexes, visible)
        ]
        out: list[str] = []
        pos = 0
        for start, stop in spans:
            out.append(line[pos:start])
            out.append(MASK)
            # Keep the escapes inside the hit, so colors after it stay as they were.
            out.extend(match.group() for match in ANSI.finditer(line, start, stop))
            pos = stop
        out.append(line[pos:])
        return "".join(out)

    def scan(self, lines: Sequence[str]) -> tuple[list[str], Masker]:
        """Mask `lines` of a job in order, following `::add-mask::` lines and private-key
        blocks; returns the masked lines and the Masker for the lines after them (self when
        nothing changed).

        A batch is first looked at as one string (its lines joined by LF, which no line and
        no variant holds): when nothing in it can match, which is the common case, that is a
        few C-level scans for the whole batch instead of several calls per line.
        """
        if not lines:
            return [], self
        key_pattern = "private_key" in self.patterns
        if not self.in_key:
            blob = "\n".join(lines)
            if ADD_MASK not in blob and not (key_pattern and _KEY_MARK in blob):
                if not self._regexes:
                    return list(lines), self
                if "\x1b" in blob:
                    blob = ANSI.sub("", blob)
                if not self._search(blob):
                    return list(lines), self
        masker = self
        out: list[str] = []
        for line in lines:
            if ADD_MASK in line:
                masker = masker.with_values(added_values(line))
            if key_pattern and (masker.in_key or _KEY_MARK in line):
                line, masker = masker._key_line(line)
            out.append(masker.mask(line))
        return out, masker

    def _key_line(self, line: str) -> tuple[str, Masker]:
        """Mask the part of a line inside a private-key block; the state after it. (A BEGIN
        line itself is masked by the private_key pattern, from the marker to its END marker
        or the line's end.)"""
        visible = ANSI.sub("", line) if "\x1b" in line else line
        if self.in_key:
            end = _END_KEY.search(visible)
            if end is None:
                return (MASK if visible.strip() else line), self
            rest, masker = self.with_key_state(False)._key_line(visible[end.end() :])
            return MASK + rest, masker
        opened = self
        for begin in _BEGIN_KEY.finditer(visible):
            closed = _END_KEY.search(visible, begin.end())
            opened = self.with_key_state(closed is None)
            if closed is None:
                break
        return line, opened

    def unsafe_tail(self, text: str) -> int:
        """How many characters at the end of `text` (a line still in progress) could be the
        start of a secret: the runner releases a waiting line early without them, so a secret
        written in two parts is still seen whole."""
        hold = 0
        if self.patterns:
            tail = _TOKEN_TAIL.search(text)
            if tail is not None:
                word = tail.group()
                if any(word.startswith(s) or s.startswith(word) for s in _PATTERN_STARTS):
                    hold = len(word)
        if self.values:
            if self._prefixes is None:
                self._prefixes = frozenset(
                    word[:k]
                    for value in self.values
                    for word in variants(value)
                    for k in range(1, len(word))
                )
            longest = max(map(len, self._prefixes), default=0)
            for k in range(min(len(text), longest), hold, -1):
                if text[-k:] in self._prefixes:
                    hold = k
                    break
        return hold


def mask_json(masker: Masker, value: object) -> object:
    """A JSON value with every string in it (keys too) masked."""
    if isinstance(value, str):
        return masker.mask(value)
    if isinstance(value, list):
        return [mask_json(masker, item) for item in value]
    if isinstance(value, dict):
        return {masker.mask(str(k)): mask_json(masker, v) for k, v in value.items()}
    return value


def added_values(line: str) -> list[str]:
    """The value an `::add-mask::VALUE` line declares (none when it is too short)."""
    visible = ANSI.sub("", line) if "\x1b" in line else line
    _, found, value = visible.partition(ADD_MASK)
    value = value.strip()
    if not found or len(value) < MIN_LENGTH:
        return []
    return [value]


def _spans(regexes: Sequence[re.Pattern[str]], text: str) -> list[tuple[int, int]]:
    """Where `regexes` match in `text`, overlapping hits merged: a search restarts one
    character after each hit's start, so a secret that overlaps another is masked whole."""
    hits: list[tuple[int, int]] = []
    for regex in regexes:
        pos = 0
        while (match := regex.search(text, pos)) is not None:
            if match.end() > match.start():
                hits.append(match.span())
            pos = match.start() + 1
    hits.sort()
    spans: list[tuple[int, int]] = []
    for start, stop in hits:
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(stop, spans[-1][1]))
        else:
            spans.append((start, stop))
    return spans


def _replace(text: str, spans: list[tuple[int, int]]) -> str:
    out: list[str] = []
    pos = 0
    for start, stop in spans:
        out.append(text[pos:start])
        out.append(MASK)
        pos = stop
    out.append(text[pos:])
    return "".join(out)
