"""Fetching for IIIF: one GET over http(s) only, with a total deadline, bounded bodies,
retries of what may pass, and every failure an IIIFError of one terminal-safe line."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artsearch import __version__
from artsearch.errors import ArtsearchError
from artsearch.textsafe import one_line, terminal

__all__ = ["MAX_JSON_BYTES", "FetchOptions", "IIIFError", "clean", "fetch", "http_url",
           "load_json"]

MAX_JSON_BYTES = 64 << 20
MAX_REDIRECTS = 5
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
REDIRECT_STATUS = {301, 302, 303, 307, 308}
_NOT_PICTURES = ("text/", "application/json", "application/ld+json", "application/xml")

class IIIFError(ArtsearchError):
    """A manifest, collection or picture that cannot be read or is not IIIF. The message is
    made one terminal-safe line here, since it quotes what servers and manifests said."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(one_line(message, 500))
        self.status = status  # the HTTP status that refused it, when one did


@dataclass
class FetchOptions:
    size: int = 1024  # longest side requested from the Image API
    timeout: float = 30.0  # seconds a request may take, from connecting to its last byte
    retries: int = 2  # further tries after a timeout, a dropped connection, 429 or 5xx
    concurrency: int = 4
    max_bytes: int = 64 << 20
    backoff: float = 0.5  # seconds before the first retry, doubling
    max_documents: int = 10_000  # manifests and collections read in one run




_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(value: str) -> str:
    """A string from JSON with lone surrogates (which nothing can encode) replaced."""
    return _SURROGATE.sub("\ufffd", value)


def http_url(url: object) -> str:
    """`url` as a fetchable http(s) URL: spaces and other characters a URL may not hold
    literally are percent-encoded (existing escapes kept); anything else is refused."""
    if not isinstance(url, str) or not url.strip():
        raise IIIFError(f"{terminal(repr(url)[:80])}: not a URL")
    url = url.strip()
    shown = terminal(url[:200])
    if any(ord(c) < 32 or ord(c) == 127 for c in url) or _SURROGATE.search(url):
        raise IIIFError(f"{shown}: a URL with control characters; not fetched")
    try:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise IIIFError(f"{shown}: not an http(s) URL; IIIF resources are fetched only over "
                            "http(s)")
        netloc = parts.netloc if parts.netloc.isascii() else \
            parts.netloc.encode("idna").decode("ascii")
        path = urllib.parse.quote(parts.path or "/", safe="/%:@!$&'()*+,;=~")
        query = urllib.parse.quote(parts.query, safe="/%:@!$&'()*+,;=~?")
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except (ValueError, UnicodeError) as e:
        raise IIIFError(f"{shown}: not a valid URL ({e})") from None
    return urllib.parse.urlunsplit((scheme, netloc, path, query, ""))


class _Retry(Exception):
    """A failure worth another try (a timeout, a dropped connection, 429 or 5xx)."""


@dataclass
class _Body:
    data: bytes
    content_type: str


def _get_once(url: str, opts: FetchOptions, limit: int) -> _Body:
    """One GET, redirects followed (http(s) only, at most MAX_REDIRECTS), within one deadline
    of opts.timeout for everything from connecting to the last byte: a watchdog shuts the
    socket down when it passes, so a server that drips a byte a second is cut off too."""
    deadline = time.monotonic() + opts.timeout
    for _hop in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else \
            http.client.HTTPConnection
        extra: dict[str, Any] = {"context": ssl.create_default_context()} \
            if parts.scheme == "https" else {}
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Retry("timed out")
        conn = kind(parts.hostname or "", parts.port, timeout=left, **extra)
        expired = threading.Event()

        def stop(conn: http.client.HTTPConnection = conn, expired: threading.Event = expired
                 ) -> None:
            expired.set()
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed
                    sock.shutdown(socket.SHUT_RDWR)

        watchdog = threading.Timer(left, stop)
        watchdog.daemon = True
        watchdog.start()
        try:
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            conn.request("GET", target or "/", headers={
                "User-Agent": f"artsearch/{__version__}",
                "Accept": "application/ld+json, application/json, image/*;q=0.9, */*;q=0.5"})
            response = conn.getresponse()
            if response.status in REDIRECT_STATUS:
                location = response.getheader("Location")
                if not location:
                    raise IIIFError(f"HTTP {response.status} without a Location for {url}")
                url = http_url(urllib.parse.urljoin(url, location))
                continue
            if response.status >= 400:
                reason = f"HTTP {response.status} {one_line(response.reason, 100)}"
                if response.status in RETRY_STATUS:
                    raise _Retry(reason)
                raise IIIFError(f"{reason} for {url}", status=response.status)
            chunks: list[bytes] = []
            size = 0
            while True:
                chunk = response.read1(1 << 16)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise IIIFError(f"{url}: larger than {limit:,} bytes; not fetched")
                chunks.append(chunk)
            if expired.is_set():
                raise _Retry("timed out")
            declared = response.getheader("Content-Length")
            if declared and declared.strip().isdigit() and int(declared) != size:
                raise _Retry(f"truncated ({size:,} of {int(declared):,} bytes)")
            return _Body(b"".join(chunks),
                         (response.getheader("Content-Type") or "").split(";")[0].strip().lower())
        except (IIIFError, _Retry):
            raise
        except http.client.IncompleteRead as e:
            raise _Retry("timed out" if expired.is_set() else
                         f"truncated ({len(e.partial):,} bytes arrived)") from None
        except TimeoutError:
            raise _Retry("timed out") from None
        except (ConnectionError, http.client.RemoteDisconnected) as e:
            raise _Retry("timed out" if expired.is_set() else
                         f"connection failed ({one_line(e, 100)})") from None
        except http.client.HTTPException as e:  # a malformed status line or headers
            if expired.is_set():
                raise _Retry("timed out") from None
            raise IIIFError(f"{url}: not a valid HTTP answer ({type(e).__name__}: "
                            f"{one_line(e, 100)})") from None
        except (OSError, ValueError, UnicodeError) as e:
            if expired.is_set():
                raise _Retry("timed out") from None
            raise _Retry(f"failed ({one_line(getattr(e, 'strerror', None) or e, 100)})") \
                from None
        finally:
            watchdog.cancel()
            conn.close()
    raise IIIFError(f"{url}: more than {MAX_REDIRECTS} redirects; not fetched")


def fetch(url: str, opts: FetchOptions, *, limit: int | None = None,
          picture: bool = False) -> bytes:
    """GET with a total deadline, bounded size and retries of what may pass; every failure
    is an IIIFError with a one-line reason. A `picture` served as text or JSON is refused."""
    url = http_url(url)
    limit = limit or opts.max_bytes
    delay = opts.backoff
    for attempt in range(opts.retries + 1):
        try:
            body = _get_once(url, opts, limit)
        except _Retry as e:
            if attempt == opts.retries:
                what = str(e)
                raise IIIFError(f"{url}: {what} after {opts.retries + 1} tries "
                                + (f"(--iiif-timeout {opts.timeout:g} s)"
                                   if "timed out" in what else "")) from None
            time.sleep(delay)
            delay *= 2
            continue
        if picture and body.content_type.startswith(_NOT_PICTURES):
            raise IIIFError(f"{url}: served {body.content_type}, not a picture; not kept")
        return body.data
    raise AssertionError("unreachable")


def _is_url(source: str) -> bool:
    return bool(re.match(r"^https?://", source, re.I))


def load_json(source: str, opts: FetchOptions, *, local: bool = False) -> dict[str, Any]:
    """A IIIF document: fetched over http(s), or read from a file when `local` (the source a
    user named, never a reference found inside a document)."""
    if _is_url(source):
        data = fetch(source, opts, limit=MAX_JSON_BYTES)
    elif not local:
        raise IIIFError(f"{source}: not an http(s) URL; documents a manifest or collection "
                        "names are fetched only over http(s)")
    else:
        path = Path(source)
        if not path.is_file():
            raise IIIFError(f"{source}: no such file, and not an http(s) URL")
        if path.stat().st_size > MAX_JSON_BYTES:
            raise IIIFError(f"{source}: larger than {MAX_JSON_BYTES:,} bytes; not a manifest "
                            "artsearch reads")
        data = path.read_bytes()
    try:
        value = json.loads(data)
    except RecursionError:
        raise IIIFError(f"{source}: JSON nested too deeply to be a manifest") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise IIIFError(f"{source}: not JSON ({e}); give a IIIF manifest or collection") from e
    if not isinstance(value, dict):
        raise IIIFError(f"{source}: not a IIIF manifest or collection (a JSON object)")
    return value


