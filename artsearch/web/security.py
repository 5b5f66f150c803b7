"""What every response of `artsearch serve` is held to: the Host it answers to, the token it
asks for off loopback, and the headers that keep a browser from doing more than showing it."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

__all__ = ["HEADERS", "LOOPBACK", "TOKEN_COOKIE", "Guard", "is_loopback", "own_names"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_COOKIE = "artsearch_token"

# The one inline style allowed, by its hash: the rule the vendored deep-zoom viewer
# (OpenSeadragon 6.1.1) adds to the page for touch screens.
VIEWER_STYLE = "'sha256-9xTiqzfwFaL2SGb1rmr8gysEwVVjIvqWAgmZgqFqpEE='"

# No inline script or style anywhere (but that rule), nothing from another origin, no
# framing, no plugins.
HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; "
                               f"script-src 'self'; style-src 'self' {VIEWER_STYLE}; "
                               "object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


def own_names() -> set[str]:
    """This machine's host name, its fully qualified name and its addresses."""
    import contextlib
    import socket

    names = {socket.gethostname(), socket.getfqdn()}
    with contextlib.suppress(OSError):  # a host name that does not resolve has no addresses
        names |= {str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)}
    return {n.lower() for n in names if n}


def is_loopback(host: str) -> bool:
    return host.strip("[]") in LOOPBACK or host.startswith("127.")


Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
App = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


class Guard:
    """ASGI middleware: refuse a Host header the server was not bound to (DNS rebinding),
    refuse requests without the token when one is set, and add the security headers.

    The token may come as `Authorization: Bearer TOKEN`, as a cookie (set when a page is
    opened with `?token=TOKEN`, so links and images in it work), or as `?token=` itself.
    """

    def __init__(self, app: App, *, hosts: Iterable[str], token: str | None,
                 max_body: int | None = None) -> None:
        self.app = app
        self.hosts = {h.lower() for h in hosts}
        self.token = token
        self.max_body = max_body

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        host = headers.get("host", "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name.strip("[]") not in {h.strip("[]") for h in self.hosts}:
            await _plain(send, 421, "unknown Host header: this server answers only to the "
                                    "address it was started on")
            return
        if scope.get("method", "GET") not in ("GET", "HEAD", "OPTIONS") and \
                not _same_origin(headers, host):
            await _plain(send, 403, "a request that changes or sends something must come "
                                    "from this server's own pages (Origin)")
            return
        tripped = [False]
        if self.max_body is not None:
            too_big = f"the request body is over {self.max_body:,} bytes; send a smaller image"
            declared = headers.get("content-length", "")
            if declared.strip().isdigit() and int(declared) > self.max_body:
                await _plain(send, 413, too_big)
                return
            receive = _bounded(receive, self.max_body, tripped)
        set_cookie = None
        if self.token is not None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = [headers.get("authorization", "").removeprefix("Bearer ").strip(),
                     _cookie(headers.get("cookie", "")), *query.get("token", [])]
            if not any(g and secrets.compare_digest(g, self.token) for g in given):
                await _plain(send, 401, "this server needs its token: open the address it "
                                        "printed at start, with ?token=...")
                return
            if query.get("token"):
                set_cookie = (f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; "
                              "SameSite=Strict")

        async def guarded(message: dict[str, Any]) -> None:
            if tripped[0]:  # the body was cut off: whatever the app says, the answer is 413
                if message["type"] == "http.response.start":
                    await _plain(send, 413, too_big)
                return
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in HEADERS.items()
                         if k.encode() not in have]  # a route may narrow its own policy
                if set_cookie:
                    extra.append((b"set-cookie", set_cookie.encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, guarded)


def _bounded(receive: Receive, limit: int, tripped: list[bool]) -> Receive:
    """`receive` that stops a body (sent without, or lying about, its length) once it passes
    `limit`: the app sees a disconnect, nothing past the limit is read or spooled, and
    `tripped` says so."""
    seen = [0]

    async def bounded() -> dict[str, Any]:
        message = await receive()
        if message["type"] == "http.request":
            seen[0] += len(message.get("body", b""))
            if seen[0] > limit:
                tripped[0] = True
                return {"type": "http.disconnect"}
        return message
    return bounded


def _same_origin(headers: dict[str, str], host: str) -> bool:
    """A browser's request from this server's own pages, or no browser at all (curl, the
    API): Sec-Fetch-Site says same-origin or none, and an Origin, when sent, is this host."""
    site = headers.get("sec-fetch-site")
    if site is not None:  # a current browser says where the request comes from
        return site in ("same-origin", "none")
    # Older browsers: the Origin, which they send with every POST (as "null" under this
    # server's no-referrer policy, or from a sandbox or a file: refused without the above).
    origin = headers.get("origin")
    return origin is None or origin.split("://", 1)[-1].lower() == host


def _cookie(header: str) -> str:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # noqa: BLE001 - a malformed cookie header is no token
        return ""
    morsel = jar.get(TOKEN_COOKIE)
    return morsel.value if morsel else ""


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *((k.encode(), v.encode()) for k, v in HEADERS.items())]})
    await send({"type": "http.response.body", "body": body})
