"""`artsearch serve`: the web app over one index, on this machine unless told otherwise."""

from __future__ import annotations

import secrets
import sys

import click

from artsearch.cli._app import cli, index_option, licences_option


@cli.command()
@index_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs --token (one is "
                   "generated and printed if not given).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option("--token", default=None, metavar="TOKEN",
              help="Require this token of every request (header `Authorization: Bearer "
                   "TOKEN`, or open the page once with ?token=TOKEN).")
@click.option("--allow-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Also answer requests whose Host header is NAME (a reverse proxy's name). "
                   "Others are refused, against DNS rebinding.")
@click.option("--public-url", default=None, metavar="URL",
              help="The address others reach the app at (behind a reverse proxy, or to "
                   "share a set): light-table manifests and CSV page links use it instead "
                   "of the address a request came to, and requests naming its host are "
                   "answered.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a browser.")
@licences_option
def serve(index_name: str | None, host: str, port: int, token: str | None,
          allowed_hosts: tuple[str, ...], public_url: str | None, open_browser: bool,
          show_licences: str | None) -> None:
    """Browse, search and compare the works of an index in a web browser.

    Click a work to see its nearest works in every space side by side, blend two spaces,
    leave out the same artist; narrow the collection by artist, style, genre, century,
    source or licence; drop a photograph on the page to find works like it (its results
    get an address of their own, /query/KEY: the newest 200 uploads are kept in
    INDEX/uploads, readable by you only). An upload's verdict comes first: the same
    picture as a work, a crop, detail or mirrored copy of one, a work inside it, related,
    or no close match (the duplicate finder's own test and thresholds). Every neighbour
    carries a band (very close, close, related, distant) read against the collection's
    own nearest neighbours. The map: point at a dot, or focus it and walk with the arrow
    keys, for its card and link; Enter opens it. The light table keeps deleted sets for
    30 days (Restore). The same answers as JSON under /api/ (shapes as `artsearch query
    --json`). `artsearch index` may run on the index meanwhile: new vectors show once it
    has saved.

    \b
      artsearch serve --index example --open
      artsearch serve --host 0.0.0.0 --token SECRET     (reachable from other machines)
      artsearch serve --public-url https://art.example.org   (behind a proxy)
    """
    import uvicorn

    from artsearch.home import resolve_index
    from artsearch.rights import parse_shown
    from artsearch.web import build
    from artsearch.web.security import is_loopback

    if not is_loopback(host) and token is None:
        token = secrets.token_urlsafe(24)
        click.echo(f"listening beyond this machine: every request needs the token {token}",
                   err=True)
    app = build(resolve_index(index_name), host=host, port=port, token=token,
                allowed_hosts=allowed_hosts, licences=parse_shown(show_licences),
                public_url=public_url)
    import threading

    # Each space's model loads while the server starts answering pages.
    threading.Thread(target=app.app.state.warm, daemon=True, name="warm").start()
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/" + (
        f"?token={token}" if token else "")
    click.echo(f"serving {resolve_index(index_name)} at {url} (Ctrl-C to stop)", err=True)
    if open_browser:
        import webbrowser

        if not webbrowser.open(url):
            click.echo(f"no web browser could be started here; open {url} in one", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    sys.exit(0)
