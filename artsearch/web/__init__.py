"""`artsearch serve`: a local web app over one index, for people who work by looking.

`build` puts the app (`app.create_app`) behind its guard (`security.Guard`): the Host header
must name the address the server was started on, and off loopback every request needs the
token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["build"]


def build(index_path: Path, *, host: str = "127.0.0.1", port: int = 8765,
          token: str | None = None, **options: Any) -> Any:
    """The ASGI app for `index_path`, answering to `host` (and loopback names when it is a
    loopback address); `token`, when given, is required of every request."""
    from artsearch.web.app import create_app
    from artsearch.web.security import LOOPBACK, Guard, is_loopback

    hosts = {host, *(LOOPBACK if is_loopback(host) else ())}
    return Guard(create_app(index_path, **options), hosts=hosts, token=token)
