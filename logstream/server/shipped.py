"""Where the files shipped beside the code are: the dashboard and the migrations.

The wheel carries the repository's top-level `web/` and `migrations/` as the data packages
`logstream.web` and `logstream.migrations` (pyproject.toml maps them), so the code finds them
by import machinery, never relative to a source tree: the same lookup works from a checkout's
editable install and from a wheel in site-packages.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def shipped_dir(package: str) -> Path:
    """The folder of a data package shipped with logstream (e.g. "logstream.web")."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise RuntimeError(f"{package} is missing from this installation of logstream")
    return Path(locations[0])
