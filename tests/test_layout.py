"""The package's dependency rules, checked on its source (AST), so the layout keeps itself:

- only server/http/ and server/app.py import Quart (or Werkzeug);
- only server/store/ holds SQL (no SQL keywords in string literals elsewhere, and no query
  building from SQLAlchemy outside it; type imports such as AsyncEngine are fine);
- server/live/ imports neither server/http/ nor Quart;
- runner/ imports nothing from server/ and none of the server stack;
- cli.py imports only config and protocol at its top (the rest inside each command).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "logstream"
SERVER_STACK = {
    "quart",
    "werkzeug",
    "hypercorn",
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "alembic",
    "prometheus_client",
    "re2",
}
SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|PRAGMA|BEGIN|COMMIT)\b")
# What code outside the store may take from SQLAlchemy: types to pass engines around.
SQLALCHEMY_TYPES = {"AsyncEngine", "AsyncConnection", "Connection", "Engine"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _imports(path: Path, *, top_only: bool = False) -> list[tuple[str, list[str]]]:
    """(module, names) for every import in the file (inside functions too, unless top_only)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_only else list(ast.walk(tree))
    found: list[tuple[str, list[str]]] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{_rel(path)}: relative import (the package uses absolute)"
            found.append((node.module or "", [alias.name for alias in node.names]))
    return found


def _root(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_only_the_http_layer_imports_quart(path: Path) -> None:
    rel = _rel(path)
    if rel.startswith("server/http/") or rel == "server/app.py":
        return
    for module, _names in _imports(path):
        assert _root(module) not in {"quart", "werkzeug"}, f"{rel} imports {module}"


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_only_the_store_holds_sql(path: Path) -> None:
    rel = _rel(path)
    if rel.startswith("server/store/"):
        return
    for module, names in _imports(path):
        if _root(module) == "sqlalchemy":
            assert set(names) <= SQLALCHEMY_TYPES, f"{rel} imports {names} from {module}"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert not SQL.match(node.value), f"{rel} holds SQL: {node.value[:60]!r}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "server" / "live").glob("*.py")), ids=_rel)
def test_live_imports_neither_http_nor_quart(path: Path) -> None:
    for module, _names in _imports(path):
        assert not module.startswith("logstream.server.http"), f"{_rel(path)} imports {module}"
        assert _root(module) not in {"quart", "werkzeug", "hypercorn"}, _rel(path)


@pytest.mark.parametrize("path", sorted((PACKAGE / "runner").glob("*.py")), ids=_rel)
def test_the_runner_imports_nothing_of_the_server(path: Path) -> None:
    for module, _names in _imports(path):
        assert not module.startswith("logstream.server"), f"{_rel(path)} imports {module}"
        assert _root(module) not in SERVER_STACK, f"{_rel(path)} imports {module}"


def test_the_cli_imports_only_config_and_protocol_at_its_top() -> None:
    ours = {m for m, _ in _imports(PACKAGE / "cli.py", top_only=True) if _root(m) == "logstream"}
    assert ours <= {"logstream.config", "logstream.protocol"}, ours


def test_the_rules_see_violations(tmp_path: Path) -> None:
    """The checks above are not vacuous: they do catch a planted violation."""
    bad = tmp_path / "bad.py"
    bad.write_text('from quart import request\nQ = "SELECT * FROM jobs"\n')
    assert ("quart", ["request"]) in _imports(bad)
    constants = [
        n.value for n in ast.walk(ast.parse(bad.read_text())) if isinstance(n, ast.Constant)
    ]
    assert any(SQL.match(value) for value in constants if isinstance(value, str))
