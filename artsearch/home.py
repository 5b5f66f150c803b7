"""Where indexes live: `$ARTSEARCH_HOME`, else `./indexes`; one folder per named index.

Which index a command uses: `--index NAME|PATH`, else `$ARTSEARCH_INDEX`, else the only index
under the home folder when there is exactly one, else `default`.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

__all__ = ["DEFAULT_INDEX", "home", "index_names", "resolve_index", "suggest"]

DEFAULT_INDEX = "default"
DB_NAME = "artsearch.db"


def home() -> Path:
    """The folder that holds named indexes."""
    env = os.environ.get("ARTSEARCH_HOME")
    return Path(env).expanduser() if env else Path.cwd() / "indexes"


def index_names() -> list[str]:
    """The named indexes under `home()` (folders holding a database), sorted."""
    folder = home()
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / DB_NAME).is_file())


def resolve_index(name_or_path: str | os.PathLike[str] | None) -> Path:
    """A bare name means a folder under `home()`; anything with a slash, `.` or `~` is a path.
    None: $ARTSEARCH_INDEX, else the only index there is, else `default`."""
    if name_or_path is not None:
        value = os.fspath(name_or_path)
    elif os.environ.get("ARTSEARCH_INDEX"):
        value = os.environ["ARTSEARCH_INDEX"]
    else:
        names = index_names()
        value = names[0] if len(names) == 1 else DEFAULT_INDEX
    if os.sep in value or "/" in value or value.startswith((".", "~")):
        return Path(value).expanduser()
    return home() / value


def suggest(path: Path) -> str:
    """ "; did you mean …?" for a missing index whose name is close to existing ones, else
    a hint listing them."""
    names = index_names()
    if path.parent.resolve() != home().resolve() or not names:
        return ""
    close = difflib.get_close_matches(path.name, names, n=3, cutoff=0.6)
    if close:
        return "; did you mean " + " or ".join(f"--index {n}" for n in close) + "?"
    return f"; indexes here: {', '.join(names[:10])} (`artsearch indexes` lists them)"
