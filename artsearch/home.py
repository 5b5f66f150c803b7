"""Where indexes live: `$ARTSEARCH_HOME`, else `./indexes`; one folder per named index."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_INDEX", "home", "resolve_index"]

DEFAULT_INDEX = "default"


def home() -> Path:
    """The folder that holds named indexes."""
    env = os.environ.get("ARTSEARCH_HOME")
    return Path(env).expanduser() if env else Path.cwd() / "indexes"


def resolve_index(name_or_path: str | os.PathLike[str] | None) -> Path:
    """A bare name means a folder under `home()`; anything with a slash, `.` or `~` is a path."""
    value = os.fspath(name_or_path) if name_or_path is not None else DEFAULT_INDEX
    if os.sep in value or "/" in value or value.startswith((".", "~")):
        return Path(value).expanduser()
    return home() / value
