"""The runner masks before sending: the spool, the assembler's hold, which variables (no server)."""

from __future__ import annotations

import pytest

from logstream.masking import MASK, Masker
from logstream.runner.outbox import LineAssembler, Spool
from logstream.runner.run import MaskOptions, build_masker

SECRET = "s3cr3t-value"


def test_the_spool_masks_lines_as_they_are_added_and_follows_add_mask() -> None:
    spool = Spool(masker=Masker([SECRET]))
    spool.add([f"a {SECRET}", "::add-mask::other-secret", "b other-secret", "plain"])
    assert spool.waiting() == [f"a {MASK}", f"::add-mask::{MASK}", f"b {MASK}", "plain"]


def test_a_secret_written_in_two_parts_across_the_early_release_is_masked() -> None:
    spool = Spool(masker=Masker([SECRET]))
    assembler = LineAssembler(wait=0.5, hold=spool.unsafe_tail)
    spool.add(assembler.feed(b"password: s3cr", now=0.0))
    spool.add(assembler.release_due(1.0))  # released early, without the tail "s3cr"
    spool.add(assembler.feed(b"3t-value done\n", now=1.1))
    assert spool.waiting() == ["password: ", f"{MASK} done"]


def test_a_line_in_progress_that_is_all_a_secret_start_waits_for_more() -> None:
    assembler = LineAssembler(wait=0.5, hold=Masker([SECRET]).unsafe_tail)
    assert assembler.feed(b"s3cr3t-va", now=0.0) == []
    assert assembler.release_due(1.0) == []
    assert assembler.due() is None
    assert assembler.feed(b"lue\n", now=2.0) == [SECRET]  # whole: the spool masks it
    assert assembler.close() == []


def test_without_a_hold_the_release_is_as_before() -> None:
    assembler = LineAssembler(wait=0.5)
    assembler.feed(b"password: s3cr", now=0.0)
    assert assembler.release_due(1.0) == ["password: s3cr"]


def test_variables_named_or_matching_a_pattern_are_masked_short_ones_refused_when_named() -> None:
    env = {"API_TOKEN": "tok-123456", "MY_VAR": "value-7890", "SHORT_KEY": "ab", "HOME": "/home"}
    warnings: list[str] = []
    masker = build_masker(MaskOptions(names=["MY_VAR", "UNSET"]), env, warnings.append)
    assert masker.values == {"tok-123456", "value-7890"}
    assert warnings == ["--mask-env UNSET: the variable is not set; nothing to mask"]
    from logstream.masking import MaskError

    with pytest.raises(MaskError) as caught:
        build_masker(MaskOptions(names=["SHORT_KEY"]), env, warnings.append)
    assert "SHORT_KEY" in str(caught.value) and "ab" not in str(caught.value).split()
    masker = build_masker(MaskOptions(env_patterns=()), env, warnings.append)
    assert masker.values == set()
