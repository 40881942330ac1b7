"""The viewer renders a line as a terminal would: checked against pyte, a terminal emulator.

Every case is one line (or a few, when the pen set on one line must carry on to the next). All
cases go into one job, one after another with a line that resets the pen between them, and are
fed to a pyte screen the same way; each row the viewer shows (read back from the DOM through
the test hook, in Chromium) must hold the characters pyte shows on that row, with the same
foreground colour and boldness for every character that is not a space, and the same
background for every character. Moving the cursor to other rows is out of scope (README), so
no case does that.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from support.browser import append, chromium_path, finish, wait_for_viewer
from support.server import REQUIRE_ALL, ServerProcess, create_job

pyte = pytest.importorskip("pyte", reason="the `test` extra installs pyte")

if not REQUIRE_ALL:
    pytest.importorskip("playwright.sync_api", reason="the `test` extra installs playwright")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        chromium_path() is None and not REQUIRE_ALL, reason="no Chromium (scripts/test installs it)"
    ),
]

E = "\x1b"
RESET = f"{E}[0m{E}]8;;{E}\\"  # between cases: default pen, no link

# name -> lines (the last is the case; the ones before set the pen it starts with)
CASES: dict[str, list[str]] = {
    "plain": ["just text"],
    "red": [f"{E}[31mred{E}[0m plain"],
    "bold green": [f"{E}[1;32mbold green{E}[0m"],
    "256 colour": [f"{E}[38;5;208morange{E}[0m"],
    "256 grey": [f"{E}[38;5;244mgrey{E}[39m default"],
    "256 low index": [f"{E}[38;5;1mpalette red{E}[0m"],
    "truecolour": [f"{E}[38;2;120;200;255msky{E}[0m"],
    "background": [f"{E}[41m on red {E}[49m off"],
    "bright fg": [f"{E}[91mbright red{E}[0m"],
    "bright bg": [f"{E}[102mbright green bg{E}[0m"],
    "default fg": [f"{E}[31mred {E}[39mdefault"],
    "bold off": [f"{E}[1mbold {E}[22mnormal"],
    "several params": [f"{E}[1;4;35mmany{E}[0m"],
    "empty sgr": [f"{E}[33myellow{E}[m reset"],
    "inverse": [f"{E}[7minverse{E}[27m normal"],
    "inverse colour": [f"{E}[31;7mred inverse{E}[0m"],
    "cr overwrite": ["abcdef\rXY"],
    "progress": ["10%\r20%\r100%"],
    "cr erase": ["abcdef\r\x1b[Kxy"],
    "erase right mid": [f"abcdef{E}[3D{E}[0K"],
    "erase left": [f"abcdef{E}[3D{E}[1K"],
    "erase line": [f"abcdef{E}[2K"],
    "erase line then col 1": ["x" * 25 + f"{E}[2K{E}[1Gdone"],
    "erase then text": [f"progress 50%{E}[2K\rdone"],
    "column": [f"abc{E}[10Gdef"],
    "column default": [f"abc{E}[Gx"],
    "column back": [f"abcdefgh{E}[3GXY"],
    "forward": [f"ab{E}[3Ccd"],
    "back": [f"abcdef{E}[2DXY"],
    "back default": [f"abc{E}[DX"],
    "back past start": [f"ab{E}[9DX"],
    "backspace": ["abc\bX"],
    "backspaces": ["abc\b\b\bXYZ"],
    "backspace at start": ["\bab"],
    "backspace colour": [f"ab\b{E}[31mC{E}[0m"],
    "tab": ["a\tb"],
    "tab overwritten": ["a\tb\rxyz"],
    "wide": ["中文ok"],
    "emoji": ["✅ done"],
    "combining": ["e\u0301te"],
    "erase chars": [f"abcdef{E}[4D{E}[2X"],
    "delete chars": [f"abcdef{E}[4D{E}[2P"],
    "insert chars": [f"abcdef{E}[4D{E}[2@"],
    "save restore": [f"abc{E}7def{E}8X"],
    "osc title": [f"{E}]0;a title\x07Text"],
    "osc 8 link": [f"see {E}]8;;https://example.com/x{E}\\the docs{E}]8;;{E}\\ now"],
    "charset": [f"{E}(Bplain{E}(0"],
    "private mode": [f"{E}[?25lhidden cursor{E}[?25h"],
    "bell": ["ding\x07dong"],
    "erase display right": [f"abcdef{E}[3D{E}[J"],
    "carry colour": [f"{E}[33myellow", "still yellow"],
    "carry bold then reset": [f"{E}[1mbold", f"b{E}[0mplain"],
    "carry background": [f"{E}[44m", f"on blue{E}[0m"],
    "carry 256": [f"{E}[38;5;120m", "green-ish"],
    "carry through cr": [f"{E}[31mred\rxx", "still red"],
    "carry through empty": [f"{E}[35m", "", "magenta"],
    "carry inverse": [f"{E}[7m", "inverse"],
    "carry ends": [f"{E}[32mgreen", f"{E}[0mplain"],
    "carry truecolour": [f"{E}[38;2;1;2;250m", "blue"],
    "carry link pen": [f"{E}[36m{E}]8;;https://example.com{E}\\a", f"b{E}]8;;{E}\\c{E}[0m"],
    "sgr then cr": [f"{E}[31mred\r{E}[32mgr"],
    "wide then column": [f"中{E}[5Gx"],
}

# What terminals do and pyte does not (it prints these): line -> (text, colour of the text).
BEYOND_PYTE = {
    "colon truecolour": (f"{E}[38:2::10:20:30mdark{E}[0m", "dark", "#0a141e"),
    "colon truecolour without colour space": (f"{E}[38:2:10:20:30mdark", "dark", "#0a141e"),
    "colon 256": (f"{E}[38:5:33mblue-ish{E}[0m", "blue-ish", "#0087ff"),
    "colon underline": (f"{E}[4:3mcurly{E}[4:0m", "curly", None),
    "dcs": (f"a{E}Pq#0;1;2{E}\\b", "ab", None),
    "apc": (f"a{E}_payload{E}\\b", "ab", None),
    # A stored line is a row: a sequence cut off at its end does not go on into the next line.
    "cut csi": (f"abc{E}[3", "abc", None),
}


def _job_lines() -> tuple[list[str], dict[int, str]]:
    lines: list[str] = []
    case_of: dict[int, str] = {}
    for name, case in CASES.items():
        for line in case:
            lines.append(line)
            case_of[len(lines)] = name
        lines.append(RESET)
    return lines, case_of


_PYTE_NAMES = ["black", "red", "green", "brown", "blue", "magenta", "cyan", "white"]


def _pyte_colour(value: str) -> Any:
    if value == "default":
        return None
    if value in _PYTE_NAMES:
        return _PYTE_NAMES.index(value)
    if value.startswith("bright") and value[6:] in _PYTE_NAMES:
        return 8 + _PYTE_NAMES.index(value[6:])
    index = pyte.graphics.FG_BG_256.index(value) if value in pyte.graphics.FG_BG_256 else -1
    if 0 <= index < 16:
        return index  # 38;5;n with n < 16 is the named colour
    return f"#{value.lower()}"


def _pyte_rows(lines: list[str]) -> list[list[tuple[str, Any, Any, bool]]]:
    screen = pyte.Screen(300, len(lines) + 1)
    pyte.Stream(screen).feed("\r\n".join(lines))
    rows = []
    for y in range(len(lines)):
        cells = []
        for x in range(screen.columns):
            char = screen.buffer[y][x]
            fg, bg = _pyte_colour(char.fg), _pyte_colour(char.bg)
            if char.reverse:
                fg, bg = bg, fg
            for ch in char.data:  # "" for the right half of a wide character
                cells.append((ch, fg, bg, bool(char.bold)))
        rows.append(_strip(cells))
    return rows


def _viewer_cells(runs: list[dict[str, Any]]) -> list[tuple[str, Any, Any, bool]]:
    cells: list[tuple[str, Any, Any, bool]] = []
    for run in runs:
        for ch in unicodedata.normalize("NFC", run["text"]):  # pyte composes e + U+0301
            if ch == "\t":  # the viewer keeps the TAB; a terminal shows blanks to the stop
                cells += [(" ", None, None, False)] * (8 - len(cells) % 8)
            else:
                cells.append((ch, run["fg"], run["bg"], run["bold"]))
    return _strip(cells)


def _strip(cells: list[tuple[str, Any, Any, bool]]) -> list[tuple[str, Any, Any, bool]]:
    while cells and cells[-1][0] == " " and cells[-1][2] is None:
        cells.pop()
    return cells


def _comparable(cells: list[tuple[str, Any, Any, bool]]) -> list[tuple[str, Any, Any, Any]]:
    # A space shows no foreground: only its background counts.
    return [(c, None if c == " " else f, b, None if c == " " else w) for c, f, b, w in cells]


def test_lines_render_as_pyte_shows_them(shared_server: ServerProcess, browser: Any) -> None:
    assert len(CASES) >= 50
    base = shared_server.url
    lines, case_of = _job_lines()
    job = create_job(base, "terminal fidelity")
    append(base, job, lines)
    finish(base, job)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{base}/jobs/{job['id']}")
        wait_for_viewer(page)
        page.wait_for_function(
            "n => window.__logstream.lines(n, n)[0].text !== undefined", arg=len(lines)
        )
        expected = _pyte_rows(lines)
        wrong = []
        for n in range(1, len(lines) + 1):
            page.evaluate("n => window.__logstream.scrollToLine(n)", n)
            page.wait_for_function(
                "n => { const r = window.__logstream.styledRow(n);"
                " return r && !document.querySelector(`#log .row[data-n='${n}'].pending`); }",
                arg=n,
            )
            runs = page.evaluate("n => window.__logstream.styledRow(n)", n)
            got = _comparable(_viewer_cells(runs))
            want = _comparable(expected[n - 1])
            if got != want:
                wrong.append((case_of.get(n, "reset"), repr(lines[n - 1]), got, want))
        assert not wrong, "\n".join(
            f"{w[0]}: {w[1]}\n  viewer {w[2]}\n  pyte   {w[3]}" for w in wrong
        )
    finally:
        context.close()


def test_osc8_links_keep_http_targets_only(shared_server: ServerProcess, browser: Any) -> None:
    base = shared_server.url
    job = create_job(base, "osc 8")
    append(
        base,
        job,
        [
            f"{E}]8;;https://example.com/build/7{E}\\build 7{E}]8;;{E}\\ done",
            f"{E}]8;id=x;http://ci.example/a{E}\\\x1b[32mgreen link\x1b[0m{E}]8;;{E}\\",
            f"{E}]8;;javascript:alert(1){E}\\not a link{E}]8;;{E}\\",
            f"{E}]8;;file:///etc/passwd{E}\\nor this{E}]8;;{E}\\",
            f"{E}]8;;https://example.com/span{E}\\starts here",
            f"and goes on{E}]8;;{E}\\ ends",
        ],
    )
    finish(base, job)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{base}/jobs/{job['id']}")
        wait_for_viewer(page)
        page.wait_for_function("() => window.__logstream.renderedLines().length === 6")
        links = page.evaluate("""() => [...document.querySelectorAll('#log a.loglink')].map(
            (a) => [a.closest('.row').dataset.n, a.getAttribute('href'), a.textContent, a.rel])""")
        rel = "noopener noreferrer nofollow"
        assert links == [
            ["1", "https://example.com/build/7", "build 7", rel],
            ["2", "http://ci.example/a", "green link", rel],
            ["5", "https://example.com/span", "starts here", rel],
            ["6", "https://example.com/span", "and goes on", rel],
        ]
        texts = [r["text"] for r in page.evaluate("window.__logstream.renderedLines()")]
        assert texts[2:4] == ["not a link", "nor this"]
    finally:
        context.close()


def test_sequences_pyte_does_not_know(shared_server: ServerProcess, browser: Any) -> None:
    """ITU T.416 colon SGR forms and DCS/APC strings: what xterm and its peers do."""
    base = shared_server.url
    job = create_job(base, "beyond pyte")
    append(base, job, [line for line, _, _ in BEYOND_PYTE.values()])
    finish(base, job)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{base}/jobs/{job['id']}")
        wait_for_viewer(page)
        page.wait_for_function(
            "n => window.__logstream.renderedLines().length === n", arg=len(BEYOND_PYTE)
        )
        for n, (name, (_, text, fg)) in enumerate(BEYOND_PYTE.items(), start=1):
            runs = page.evaluate("n => window.__logstream.styledRow(n)", n)
            assert "".join(r["text"] for r in runs) == text, name
            assert runs[0]["fg"] == fg, name
        curly = page.locator('#log .row[data-n="4"] .ansi-underline')
        assert curly.inner_text() == "curly"
    finally:
        context.close()
