"""`artsearch serve`: a local web app over one index, for people who work by looking.

`build` puts the app (`app.create_app`) behind its guard (`security.Guard`): the Host header
must name the address the server was started on, and off loopback every request needs the
token; requests that send something must come from the app's own pages (Origin); bodies
are capped as they arrive.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

__all__ = ["build", "public_url"]


def public_url(text: str) -> str:
    """`serve --public-url`: the address others reach the app at (a proxy's, or this
    machine's name), as http(s)://HOST[:PORT][/PATH]; refused in one line otherwise."""
    from artsearch.errors import OptionError

    parts = urllib.parse.urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
            or parts.fragment or parts.username or parts.password:
        raise OptionError(f"--public-url {text!r}: give the address others open, e.g. "
                          "https://art.example.org or http://gallery-pc:8765")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"),
                                    "", ""))


def build(index_path: Path, *, host: str = "127.0.0.1", port: int = 8765,
          token: str | None = None, allowed_hosts: tuple[str, ...] = (),
          **options: Any) -> Any:
    """The ASGI app for `index_path`, answering to `host` (and loopback names when it is a
    loopback address; this machine's names and addresses when it is 0.0.0.0 or ::) and to
    `allowed_hosts`; `token`, when given, is required of every request."""
    from artsearch.web.app import MAX_UPLOAD_BYTES, create_app
    from artsearch.web.security import LOOPBACK, Guard, is_loopback, own_names

    public = options.get("public_url")
    if public is not None:
        options["public_url"] = public_url(public)
    hosts = {host, *allowed_hosts, *(LOOPBACK if is_loopback(host) else ())}
    if public is not None:  # requests forwarded under that name are answered too
        hosts.add(urllib.parse.urlsplit(options["public_url"]).hostname or host)
    if host in ("0.0.0.0", "::"):
        hosts |= {*LOOPBACK, *own_names()}
    app: Any = create_app(index_path, **options)  # an ASGI app: Starlette's types say less
    # The body limit: an upload's cap plus room for the form around it, checked as it
    # arrives, so an oversized body is refused before it is spooled anywhere.
    limit = int(options.get("max_upload", MAX_UPLOAD_BYTES)) + (1 << 20)
    return Guard(app, hosts=hosts, token=token, max_body=limit)
