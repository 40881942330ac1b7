"""A corpus of secret cases for the leak tests, and the oracle that finds a leaked secret.

Each case is some output lines holding a secret in one of the forms masking must catch, with
the values the job declares and the needles (texts that would show the secret) that must
appear nowhere after masking. The needles are computed here independently of
logstream/masking.py: the encoded form as it appears in the line (for base64, the characters
that depend only on the secret, one less at each end).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import re
import urllib.parse

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")


@dataclasses.dataclass
class Case:
    kind: str
    lines: list[str]
    needles: list[str]
    declared: list[str] = dataclasses.field(default_factory=list)
    split: int | None = None  # runner: write the first line in two parts at this index
    pause: bool = False  # runner: and wait past the early release between them


def visible(text: str) -> str:
    return ANSI.sub("", text)


def _secret(rng: random.Random, i: int, extra: str = "") -> str:
    alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789" + extra
    return f"Sk{i:04d}" + "".join(rng.choice(alphabet) for _ in range(rng.randint(8, 24)))


def _context(rng: random.Random, inner: str) -> str:
    before = rng.choice(["", "token=", "  export X=", "curl -H 'Authorization: ", "[info] "])
    after = rng.choice(["", " done", "'", "; echo ok", " \t(end)"])
    return before + inner + after


def _b64_core(prefix: bytes, secret: bytes, suffix: bytes, urlsafe: bool) -> tuple[str, str]:
    raw = prefix + secret + suffix
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()
    start = -(-8 * len(prefix) // 6) + 1
    stop = (8 * (len(prefix) + len(secret))) // 6 - 1
    return encoded, encoded[start:stop]


def build(seed: int = 7) -> list[Case]:
    """At least 1,000 cases over every form masking covers."""
    rng = random.Random(seed)
    cases: list[Case] = []
    n = 0

    def secret(extra: str = "") -> str:
        nonlocal n
        n += 1
        return _secret(rng, n, extra)

    for _ in range(200):  # as it is, in some context, sometimes twice
        s = secret()
        line = _context(rng, s) + (f" again {s}" if rng.random() < 0.2 else "")
        cases.append(Case("plain", [line], [s], [s]))
    for _ in range(8):  # base64: 5 prefixes x 3 suffixes x standard/URL-safe = 30 each
        s = secret("+/")
        for pre in range(5):
            for post in range(3):
                for urlsafe in (False, True):
                    encoded, core = _b64_core(b"x" * pre, s.encode(), b"y" * post, urlsafe)
                    cases.append(Case("base64", [_context(rng, encoded)], [core, s], [s]))
    for i in range(100):  # URL-encoded
        s = secret(" /&=?@:")
        form = [
            urllib.parse.quote(s, safe=""),
            urllib.parse.quote_plus(s),
            re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), urllib.parse.quote(s, safe="")),
            urllib.parse.quote(s),
        ][i % 4]
        cases.append(Case("url", [f"GET /login?pw={form}&x=1"], [form, s], [s]))
    for i in range(100):  # JSON-escaped
        s = secret('"\\/\t')
        form = json.dumps(s)[1:-1]
        if i % 2:
            form = form.replace("/", "\\/")
        cases.append(Case("json", ['{"password": "' + form + '", "ok": true}'], [form, s], [s]))
    for i in range(150):  # inside escape sequences
        s = secret()
        if i % 3 == 0:
            line = f"\x1b[1;31m{s}\x1b[0m trailing"
        elif i % 3 == 1:
            cuts = sorted(rng.sample(range(1, len(s)), rng.randint(1, 3)))
            parts = [s[a:b] for a, b in zip([0, *cuts], [*cuts, len(s)], strict=True)]
            color = f"\x1b[3{rng.randint(0, 7)}m"
            line = "key: " + color + "\x1b[0m".join(parts) + "\x1b[0m"
        else:
            line = f"\x1b]8;;https://example.com\x07{s}\x1b]8;;\x07 \x1b[32mok\x1b[0m"
        cases.append(Case("ansi", [line], [s], [s]))
    for _ in range(50):  # after a CR segment (a progress bar redrawn, then the secret)
        s = secret()
        cases.append(Case("cr", [f"10%\r50%\r{s} 100%"], [s], [s]))
    for _ in range(50):  # multi-line values: masked line by line, and JSON-escaped whole
        lines = [secret() for _ in range(3)]
        value = "\n".join(lines)
        out = [f"  {line}" for line in lines] + [json.dumps({"key": value})]
        cases.append(Case("multiline", out, [*lines, json.dumps(value)[1:-1]], [value]))
    for _ in range(100):  # declared by the output itself
        s = secret()
        lines = [f"::add-mask::{s}", f"using {s}", f"\x1b[1m{s}\x1b[0m again"]
        cases.append(Case("add-mask", lines, [s]))
    for i in range(100):  # well-known token formats, no declaration
        token_alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        body = "".join(rng.choice(token_alphabet) for _ in range(36))
        kind = i % 6
        if kind == 0:
            token = "ghp_" + body
        elif kind == 1:
            token = "github_pat_" + body[:22] + "_" + (body * 2)[:59]
        elif kind == 2:
            token = "glpat-" + body[:20]
        elif kind == 3:
            token = f"xoxb-{rng.randint(10**11, 10**12)}-{body[:24]}"
        elif kind == 4:
            token = "AKIA" + "".join(
                rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16)
            )
        else:
            key_body = [body + body[:28], body[::-1] + body[:28], body[:20]]
            lines = ["-----BEGIN OPENSSH PRIVATE KEY-----", *key_body]
            lines.append("-----END OPENSSH PRIVATE KEY-----")
            one = "\\n".join(lines)
            cases.append(Case("pattern", [*lines, f'{{"key": "{one}"}}'], key_body))
            continue
        cases.append(Case("pattern", [f"export TOKEN={token} && deploy"], [token[4:]]))
    for i in range(60):  # split across two writes of a line in progress (the runner)
        s = secret()
        line = f"password: {s} accepted"
        cut = len("password: ") + rng.randint(1, len(s) - 1)
        cases.append(Case("split", [line], [s], [s], split=cut, pause=i < 4))
    assert len(cases) >= 1000, len(cases)
    return cases
