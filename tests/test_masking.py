"""The masking module (logstream/masking.py): variants, escapes, state, the partial-line hold."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from logstream import masking
from logstream.masking import MASK, Masker

SECRET = "s3cr3t-value"


def test_a_secret_is_masked_as_it_is_and_around_it_stays() -> None:
    masker = Masker([SECRET])
    assert masker.mask(f"token={SECRET}; next") == f"token={MASK}; next"
    assert masker.mask("nothing here") == "nothing here"


@pytest.mark.parametrize("before", [b"", b"a", b"ab", b"abc", b"abcd"])
@pytest.mark.parametrize("after", [b"", b"z", b"zz"])
@pytest.mark.parametrize("urlsafe", [False, True])
def test_base64_at_every_alignment_is_masked(before: bytes, after: bytes, urlsafe: bool) -> None:
    raw = before + SECRET.encode() + after
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    line = "Authorization: Basic " + encode(raw).decode()
    masked = Masker([SECRET]).mask(line)
    assert MASK in masked
    # What is left of the encoding decodes to at most a few bytes of the secret's edges.
    assert SECRET[1:-1] not in _decodable(masked)


def _decodable(text: str) -> str:
    found = []
    for piece in text.replace(MASK, " ").split():
        for pad in ("", "=", "=="):
            try:
                found.append(base64.b64decode(piece + pad).decode("latin-1"))
            except ValueError:
                continue
    return " ".join(found)


def test_url_and_json_encodings_are_masked() -> None:
    secret = 'p@ss w/rd"&=\\x'
    masker = Masker([secret])
    for form in (
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        urllib.parse.quote(secret, safe="").lower(),
        json.dumps(secret)[1:-1],
        json.dumps(secret).replace("/", "\\/")[1:-1],
    ):
        assert masker.mask(f"x {form} y") == f"x {MASK} y", form


def test_a_multiline_secret_is_masked_line_by_line() -> None:
    secret = "first-line-of-it\nsecond-line-of-it\nend"
    masker = Masker([secret])
    assert masker.mask("first-line-of-it") == MASK
    assert masker.mask("  second-line-of-it") == "  " + MASK
    assert masker.mask(json.dumps({"k": secret})) == '{"k": "' + MASK + '"}'


def test_secrets_inside_escape_sequences_are_masked_and_the_escapes_kept() -> None:
    masker = Masker([SECRET])
    assert masker.mask(f"\x1b[31m{SECRET}\x1b[0m") == f"\x1b[31m{MASK}\x1b[0m"
    split = "s3cr\x1b[1m3t-va\x1b[0mlue!"
    assert masker.mask(split) == f"{MASK}\x1b[1m\x1b[0m!"
    assert masker.mask(f"progress 10%\r{SECRET}") == f"progress 10%\r{MASK}"
    link = f"\x1b]8;;https://x\x07{SECRET}\x1b]8;;\x07"
    assert SECRET not in masker.mask(link)


def test_overlapping_secrets_are_both_masked_whole() -> None:
    masker = Masker(["abcdef123", "123xyz99"])
    assert masker.mask("abcdef123xyz99 end") == f"{MASK} end"


@pytest.mark.parametrize(
    "token",
    [
        "ghp_" + "A1b2" * 9,
        "github_pat_" + "x" * 22 + "_" + "y" * 59,
        "glpat-" + "abcDEF123_-" * 2,
        "xoxb-123456789012-abcdefghij",
        "AKIAIOSFODNN7EXAMPLE",
    ],
)
def test_well_known_token_formats_are_masked(token: str) -> None:
    assert Masker().mask(f"using {token} now") == f"using {MASK} now"
    assert Masker(patterns=()).mask(token) == token


def test_a_private_key_block_is_masked_on_one_line_and_over_several() -> None:
    one = "key=-----BEGIN RSA PRIVATE KEY-----\\nMIIEow\\n-----END RSA PRIVATE KEY----- ok"
    assert Masker().mask(one) == f"key={MASK} ok"
    lines = [
        "here it comes",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
        "AAAA",
        "-----END OPENSSH PRIVATE KEY-----",
        "after",
    ]
    out, after = Masker().scan(lines)
    assert out == ["here it comes", MASK, MASK, MASK, MASK, "after"]
    assert not after.in_key
    first, inside = Masker().scan(lines[:3])
    assert inside.in_key
    rest, _ = inside.scan(lines[3:])
    assert first + rest == out


def test_add_mask_masks_its_value_from_there_on_and_its_own_line() -> None:
    out, after = Masker().scan(["before hunter22", "::add-mask::hunter22", "then hunter22"])
    assert out == ["before hunter22", f"::add-mask::{MASK}", f"then {MASK}"]
    assert after.values == {"hunter22"}


def test_add_mask_of_a_short_value_masks_nothing_more() -> None:
    out, after = Masker().scan(["::add-mask::abc", "abc abc"])
    assert out == ["::add-mask::abc", "abc abc"]
    assert after.values == set()


def test_short_values_are_refused_without_showing_them() -> None:
    with pytest.raises(masking.MaskError) as caught:
        masking.check_value("abc12", "--mask-env PASS")
    assert "abc12" not in str(caught.value)
    assert "6" in str(caught.value)
    masking.check_value("abc123")


def test_a_batch_with_nothing_to_mask_comes_back_equal() -> None:
    lines = ["plain", "\x1b[32mgreen\x1b[0m", ""]
    out, after = Masker([SECRET]).scan(lines)
    assert out == lines


def test_the_tail_of_a_line_in_progress_that_may_start_a_secret_is_held() -> None:
    masker = Masker([SECRET])
    assert masker.unsafe_tail("password: s3cr") == 4
    assert masker.unsafe_tail("password: ") == 0
    assert masker.unsafe_tail("export T=ghp_abc") == len("ghp_abc")
    assert Masker(patterns=()).unsafe_tail("export T=ghp_abc") == 0


def test_env_secrets_match_the_default_patterns() -> None:
    env = {"NPM_TOKEN": "x" * 10, "HOME": "/root", "db_password": "y" * 10, "EMPTY_KEY": ""}
    assert masking.env_secrets(env) == {"NPM_TOKEN": "x" * 10, "db_password": "y" * 10}


def test_pattern_names_parse_and_refuse_unknown_ones() -> None:
    assert masking.pattern_names("all") == tuple(masking.PATTERNS)
    assert masking.pattern_names("none") == ()
    assert masking.pattern_names("github, aws") == ("github", "aws")
    with pytest.raises(masking.MaskError):
        masking.pattern_names("github,nope")


def test_the_escapes_are_those_search_strips() -> None:
    from logstream.server import search

    assert masking.ANSI.pattern == search._ANSI.pattern


def test_a_masker_never_shows_its_values() -> None:
    assert SECRET not in repr(Masker([SECRET]))
