"""The benchmark's command line: every scenario's --help renders (argparse formats help lazily,
so a stray '%' in a help text only fails when someone asks for help)."""

from __future__ import annotations

import contextlib
import io

import pytest

from bench.run import build_parser

SCENARIOS = ["selfcheck", "fanout", "catchup", "ingest", "idle", "h2"]


@pytest.mark.parametrize("argv", [[]] + [[name] for name in SCENARIOS])
def test_help_renders(argv: list[str]) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        build_parser().parse_args([*argv, "--help"])
    assert stop.value.code == 0
    assert "--peer" in out.getvalue()
    if argv:
        assert f"python -m bench.run {argv[0]}" in out.getvalue()
