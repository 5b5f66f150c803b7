"""IIIF in and out: index the canvases of Presentation 2 or 3 manifests and collections
through the Image API, and write query results or a clustering run as a Presentation 3
manifest that Mirador or Universal Viewer opens.

Reading. A manifest or collection (a file or an http(s) URL) is walked to its canvases; each
canvas's image is fetched at a bounded size — from its Image API service (for a level-0
static tree, one of the sizes its info.json lists), or the image itself when it has no
service — into INDEX/iiif-images/, under a name made from the canvas and image URIs. That
folder is then indexed like any collection, with title, creator, date, rights and the
manifest and canvas URIs as catalogue fields. A canvas whose picture is already there (and
decoded) is not fetched again, so a re-run fetches only what is new. Each request has a total
deadline, bodies are bounded, and a picture is kept only once it decodes; requests are
retried (timeouts, dropped connections, truncated bodies, 429 and 5xx) and run a few at a
time. Every failure — of a canvas, or of a document inside a collection — is one line naming
it and a terminal-safe reason, and the run goes on. Only the top-level source may be a local
file; everything a manifest names is fetched over http(s) only, redirects included, and file
names are hashes. A run reads at most `FetchOptions.max_documents` documents, collections
nested at most MAX_DEPTH deep.

Writing. Each work becomes a canvas whose image is its IIIF image where it came from one,
else `BASE/image/ID` of `artsearch serve`; scores, ranks and clusters are in the canvases'
metadata, the query and provenance in the manifest's. iiif-prezi3 builds the manifest, which
validates it against the specification's model.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import html
import http.client
import json
import os
import re
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artsearch import __version__
from artsearch.errors import ArtsearchError, BadImageError
from artsearch.textsafe import one_line, terminal

if TYPE_CHECKING:
    from artsearch.index import ArtIndex
    from artsearch.indexing import IndexOptions, IndexReport

__all__ = ["Canvas", "FetchOptions", "FetchReport", "index_iiif", "read_canvases",
           "results_manifest", "run_manifest"]

FOLDER = "iiif-images"  # inside the index folder: the fetched pictures, indexed as a collection
CATALOGUE = "iiif-catalogue.csv"
MAX_JSON_BYTES = 64 << 20
MAX_DEPTH = 4  # collections within collections
MAX_REDIRECTS = 5
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
REDIRECT_STATUS = {301, 302, 303, 307, 308}
_NOT_PICTURES = ("text/", "application/json", "application/ld+json", "application/xml")


class IIIFError(ArtsearchError):
    """A manifest, collection or picture that cannot be read or is not IIIF. The message is
    made one terminal-safe line here, since it quotes what servers and manifests said."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message, 500))


@dataclass
class FetchOptions:
    size: int = 1024  # longest side requested from the Image API
    timeout: float = 30.0  # seconds a request may take, from connecting to its last byte
    retries: int = 2  # further tries after a timeout, a dropped connection, 429 or 5xx
    concurrency: int = 4
    max_bytes: int = 64 << 20
    backoff: float = 0.5  # seconds before the first retry, doubling
    max_documents: int = 10_000  # manifests and collections read in one run


@dataclass
class Canvas:
    manifest: str
    canvas: str
    image: str | None  # the image resource's id
    service: str | None  # its Image API service, if any
    service_version: int  # 2 or 3
    level0: bool
    fields: dict[str, str | None]

    @property
    def key(self) -> str:
        raw = f"{self.canvas}\n{self.image}".encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(raw).hexdigest()
        manifest = hashlib.sha256(self.manifest.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{manifest[:10]}/{digest[:16]}.jpg"


@dataclass
class FetchReport:
    canvases: int = 0
    fetched: int = 0
    already: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (canvas URI, reason)
    manifests: int = 0


# -- fetching ---------------------------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(value: str) -> str:
    """A string from JSON with lone surrogates (which nothing can encode) replaced."""
    return _SURROGATE.sub("\ufffd", value)


def _http_url(url: object) -> str:
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
                url = _http_url(urllib.parse.urljoin(url, location))
                continue
            if response.status >= 400:
                reason = f"HTTP {response.status} {one_line(response.reason, 100)}"
                if response.status in RETRY_STATUS:
                    raise _Retry(reason)
                raise IIIFError(f"{reason} for {url}")
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
    url = _http_url(url)
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


# -- reading manifests ----------------------------------------------------------------------
# Manifests are other people's JSON: every value is checked for its type where it is read,
# and a part of the wrong shape is skipped, never trusted.

def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value] if isinstance(value, dict) else []


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in _list(value) if isinstance(v, dict)]


def _id(obj: Any) -> str | None:
    if isinstance(obj, str):
        return _clean(obj) if obj.strip() else None
    if isinstance(obj, dict):
        value = obj.get("id") or obj.get("@id")
        return _clean(value) if isinstance(value, str) and value.strip() else None
    return None


def _type(obj: dict[str, Any]) -> str:
    kind = obj.get("type") or obj.get("@type") or ""
    kind = kind[0] if isinstance(kind, list) and kind else kind
    return _clean(kind).split(":")[-1].lower() if isinstance(kind, str) else ""


_TAGS = re.compile(r"<[^>]+>")


def text(value: Any, depth: int = 0) -> str | None:
    """A label or value as plain text: a v3 language map (English, then none, then the
    first), a v2 string, @value object or list; HTML tags dropped."""
    if value is None or depth > 8:
        return None
    if isinstance(value, dict):
        if "@value" in value:
            return text(value["@value"], depth + 1)
        for lang in ("en", "none", *value):
            if lang in value:
                return text(value[lang], depth + 1)
        return None
    if isinstance(value, list):
        parts = [t for t in (text(v, depth + 1) for v in value[:100]) if t]
        return "; ".join(parts) if parts else None
    if not isinstance(value, str | int | float):
        return None
    out = html.unescape(_TAGS.sub("", _clean(str(value)))).strip()
    return out[:2000] or None


_FIELDS = {"artist": ("creator", "artist", "author", "maker", "painter", "attribution"),
           "date": ("date", "dated", "date created", "created", "creation date", "period"),
           "style": ("style", "movement", "school"), "genre": ("genre", "type", "object type")}


def _metadata(entries: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in _dicts(entries) if isinstance(entries, list) else []:
        label, value = (text(entry.get("label")) or "").lower(), text(entry.get("value"))
        for name, labels in _FIELDS.items():
            if label in labels and value and name not in out:
                out[name] = value
    return out


def _service(resource: dict[str, Any]) -> tuple[str | None, int, bool]:
    for svc in _dicts(resource.get("service")):
        kind = _type(svc)
        context = json.dumps(svc.get("@context") or "")
        profile = json.dumps(svc.get("profile") or "")
        if "imageservice" in kind or "image" in context or "image" in profile:
            version = 2 if ("imageservice2" in kind or "/image/2" in context) else 3
            level0 = "level0" in profile.replace(" ", "")
            sid = _id(svc)
            if sid:
                return sid.rstrip("/"), version, level0
    return None, 3, False


def _profile(resource: dict[str, Any]) -> str | None:
    """The service's compliance level as a short name (level0, level1, level2)."""
    for svc in _dicts(resource.get("service")):
        found = re.search(r"level([012])", json.dumps(svc.get("profile") or ""))
        if found:
            return f"level{found.group(1)}"
    return None


def _image_body(body: dict[str, Any]) -> dict[str, Any] | None:
    """The image resource of an annotation body: itself, a Choice's default or first item,
    or a SpecificResource's source."""
    kind = _type(body)
    if kind == "choice":
        options = _dicts(body.get("default")) + _dicts(body.get("item")) + \
            _dicts(body.get("items"))
        return _image_body(options[0]) if options else None
    if kind == "specificresource":
        source = body.get("source")
        source = source if isinstance(source, dict) else {"id": source} \
            if isinstance(source, str) else None
        return _image_body(source) if source else None
    if kind not in ("image", ""):
        return None
    return body if _id(body) or _dicts(body.get("service")) else None


def _manifest_canvases(doc: dict[str, Any], uri: str) -> list[Canvas]:
    label = text(doc.get("label"))
    meta = _metadata(doc.get("metadata"))
    rights = text(doc.get("rights")) or text(doc.get("license"))
    statement = doc.get("requiredStatement")
    source = text(statement.get("value")) if isinstance(statement, dict) \
        else text(doc.get("attribution"))
    items: list[dict[str, Any]] = []
    images: list[list[dict[str, Any]]] = []
    if "sequences" in doc:  # Presentation 2
        sequences = _dicts(doc.get("sequences"))
        items = _dicts(sequences[0].get("canvases")) if sequences else []
        for c in items:
            bodies = []
            for img in _dicts(c.get("images")):
                for resource in _dicts(img.get("resource"))[:1]:
                    found = _image_body(resource)
                    if found:
                        bodies.append(found)
            images.append(bodies)
    else:  # Presentation 3
        items = _dicts(doc.get("items"))
        for c in items:
            bodies = []
            for page in _dicts(c.get("items")):
                for anno in _dicts(page.get("items")):
                    for b in _dicts(anno.get("body")):
                        found = _image_body(b)
                        if found:
                            bodies.append(found)
            images.append(bodies)
    canvases = []
    several = len(items) > 1
    for c, bodies in zip(items, images, strict=True):
        cid = _id(c)
        if not cid or not bodies:
            continue
        body = bodies[0]
        service, version, level0 = _service(body)
        clabel = text(c.get("label"))
        title = (f"{label}, {clabel}" if several and clabel and label else
                 label or clabel)
        fields = {"title": title, "license": rights, "source": source, **meta,
                  **_metadata(c.get("metadata")), "iiif_manifest": uri, "iiif_canvas": cid,
                  "iiif_service": service, "iiif_image": _id(body),
                  "iiif_service_type": f"ImageService{version}" if service else None,
                  "iiif_profile": _profile(body) if service else None}
        date = text(c.get("navDate")) or text(doc.get("navDate"))
        if date and not fields.get("date"):
            fields["date"] = date
        canvases.append(Canvas(uri, cid, _id(body), service, version, level0, fields))
    return canvases


def read_canvases(source: str, opts: FetchOptions | None = None,
                  *, on_error: Callable[[str, str], None] | None = None) -> list[Canvas]:
    """Every canvas with an image in a manifest, or in the manifests of a collection (nested
    up to MAX_DEPTH, each read once, at most opts.max_documents in all), each canvas once.
    A document inside a collection that cannot be read, or is not IIIF, is reported through
    `on_error` and skipped; the top-level source must be readable."""
    opts = opts or FetchOptions()
    seen: set[str] = set()
    out: dict[str, Canvas] = {}
    read = [0]

    def fail(ref: str, why: str) -> None:
        if on_error is None:
            raise IIIFError(why)
        on_error(terminal(ref), one_line(why, 500))

    def walk(ref: str, doc: dict[str, Any] | None, depth: int) -> None:
        top = depth == 0
        if ref in seen:
            return
        seen.add(ref)
        if depth > MAX_DEPTH:
            fail(ref, f"collections nested more than {MAX_DEPTH} deep; not read")
            return
        if doc is None:
            if read[0] >= opts.max_documents:
                if read[0] == opts.max_documents:
                    fail(ref, f"more than {opts.max_documents:,} documents in one run; the "
                              "rest were not read")
                    read[0] += 1
                return
            read[0] += 1
            try:
                doc = load_json(ref, opts, local=top)
            except IIIFError as e:
                if top:
                    raise
                fail(ref, str(e))
                return
        kind = _type(doc)
        uri = _id(doc) or ref
        if uri != ref:
            if uri in seen:  # the same document reached under another address
                return
            seen.add(uri)
        if kind == "manifest":
            for c in _manifest_canvases(doc, uri):
                out.setdefault(c.key, c)
        elif kind == "collection":
            children = [*_list(doc.get("items")), *_list(doc.get("manifests")),
                        *_list(doc.get("collections")), *_list(doc.get("members"))]
            for child in children:
                cid = _id(child)
                if not cid:
                    continue
                embedded = child if isinstance(child, dict) and _type(child) == "manifest" \
                    and any("items" in i for i in _dicts(child.get("items"))) else None
                walk(cid, embedded, depth + 1)
        else:
            why = (f"{terminal(ref)}: a {terminal(kind[:40]) or 'JSON'} document, not a IIIF "
                   "Manifest or Collection")
            if top:
                raise IIIFError(why)
            fail(ref, why)

    walk(_clean(source), None, 0)
    return list(out.values())


def _pixels(value: Any) -> int | None:
    """A width or height from info.json: a positive whole number, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and 0 < value <= 1_000_000 else None


def image_request(canvas: Canvas, opts: FetchOptions) -> str:
    """The URL of the canvas's picture at no more than opts.size on its longer side."""
    if canvas.service is None:
        if canvas.image is None:
            raise IIIFError("no image and no image service")
        return _http_url(canvas.image)
    base = _http_url(canvas.service).rstrip("/")
    if canvas.level0:  # a static tree has only the sizes it lists
        raw = fetch(f"{base}/info.json", opts, limit=MAX_JSON_BYTES)
        try:
            info = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise IIIFError(f"{base}/info.json: not JSON; the image service is broken") \
                from None
        if not isinstance(info, dict):
            raise IIIFError(f"{base}/info.json: not an image information document")
        sizes = [(w, h) for w, h in ((_pixels(s.get("width")), _pixels(s.get("height")))
                                     for s in _dicts(info.get("sizes"))) if w and h]
        if not sizes:
            w, h = _pixels(info.get("width")), _pixels(info.get("height"))
            if not w or not h:
                raise IIIFError(f"{base}/info.json: a level-0 service that lists no usable "
                                "sizes")
            sizes = [(w, h)]
        fitting = [s for s in sizes if max(s) <= opts.size]
        w, h = max(fitting, key=max) if fitting else min(sizes, key=max)
        region = f"{w}," if canvas.service_version == 2 else f"{w},{h}"
        return f"{base}/full/{region}/0/default.jpg"
    return f"{base}/full/!{opts.size},{opts.size}/0/default.jpg"


def _picture(url: str, opts: FetchOptions) -> bytes:
    """A canvas's picture, kept only once it decodes (an HTML error page served as 200, or a
    body cut short, is refused)."""
    from artsearch.images import decode_image

    data = fetch(url, opts, picture=True)
    try:
        decode_image(data)
    except BadImageError as e:
        raise IIIFError(f"{url}: not a picture that decodes ({e}); not kept") from None
    return data


def fetch_canvases(canvases: Sequence[Canvas], folder: Path, opts: FetchOptions,
                   report: FetchReport, progress: Callable[[int], None] | None = None,
                   *, refetch: frozenset[str] = frozenset()) -> None:
    """Fetch what is not in `folder` yet (or is, but is in `refetch`: pictures the index
    could not decode); each picture written whole under a name of its own, then renamed, so
    a killed run leaves only complete files."""
    todo = []
    for c in canvases:
        if (folder / c.key).is_file() and c.key not in refetch:
            report.already += 1
        else:
            todo.append(c)

    def one(c: Canvas) -> tuple[Canvas, str | None]:
        try:
            data = _picture(image_request(c, opts), opts)
        except IIIFError as e:
            return c, str(e)
        path = folder / c.key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return c, None

    with ThreadPoolExecutor(max_workers=max(1, opts.concurrency)) as pool:
        for c, error in pool.map(one, todo):
            if error is None:
                report.fetched += 1
            else:
                report.failed.append((terminal(c.canvas), error))
            if progress is not None:
                progress(1)


def index_iiif(source: str, index: ArtIndex, options: IndexOptions,
               fetch_opts: FetchOptions | None = None,
               progress: Callable[[str], None] | None = None
               ) -> tuple[IndexReport, FetchReport]:
    """Fetch the canvases of a manifest or collection and index them (see the module). The
    writer's lock is taken first: nothing is fetched or written while another run writes."""
    from artsearch import catalogue as catalogue_mod
    from artsearch.indexing import _record_failures, index_collection

    opts = fetch_opts or FetchOptions()
    index.lock()
    folder = index.path / FOLDER
    if index.root is not None and index.root != folder.resolve():
        raise IIIFError(f"{index.path} indexes the folder {index.root}; IIIF pictures are kept "
                        "in an index of their own: give another --index")
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in [*folder.glob("*/.*.part"), index.path / f".{CATALOGUE}.tmp"]:
        leftover.unlink(missing_ok=True)  # a killed run's unfinished files
    report = FetchReport()
    errors: list[tuple[str, str]] = []
    canvases = read_canvases(source, opts, on_error=lambda ref, why: errors.append((ref, why)))
    report.canvases = len(canvases)
    report.manifests = len({c.manifest for c in canvases})
    if progress:
        progress(f"{len(canvases)} canvases in {report.manifests} manifest(s)")
    undecoded = frozenset(f["path"] for f in catalogue_mod.failures(index)) \
        if index.exists else frozenset()
    fetch_canvases(canvases, folder, opts, report, refetch=undecoded)
    report.failed = errors + report.failed
    # The catalogue of everything fetched so far: earlier runs' rows are kept, this run's win.
    catalogue = index.path / CATALOGUE
    rows: dict[str, dict[str, Any]] = {}
    if catalogue.is_file():
        with catalogue.open(newline="", encoding="utf-8") as fh:
            rows = {r["path"]: r for r in csv.DictReader(fh) if r.get("path")}
    for c in canvases:
        if (folder / c.key).is_file():
            rows[c.key] = {"path": c.key, **c.fields}
    columns = ["path", "title", "artist", "date", "style", "genre", "license", "source",
               "iiif_manifest", "iiif_canvas", "iiif_service", "iiif_image",
               "iiif_service_type", "iiif_profile"]
    tmp = catalogue.with_name(f".{catalogue.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8", errors="replace") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows.values())
    os.replace(tmp, catalogue)
    if not rows:
        why = report.failed[0][1] if report.failed else (
            "no canvas has an image" if not canvases else "nothing could be fetched")
        raise IIIFError(f"{source}: no canvas picture could be fetched ({why})")
    options.metadata = catalogue
    result = index_collection(folder, index, options)
    if report.failed:  # kept for `artsearch info --failures`, by canvas URI
        with index.store.session() as s, s.begin():
            _record_failures(s, report.failed)
    return result, report


# -- writing manifests ------------------------------------------------------------------------

def _lang(value: Any) -> dict[str, list[str]]:
    return {"en": [str(value)]}


def _entry(label: str, value: Any) -> dict[str, Any]:
    return {"label": _lang(label), "value": _lang(value)}


def _prezi() -> Any:
    try:
        import iiif_prezi3
    except ImportError:
        raise ArtsearchError("IIIF manifests need iiif-prezi3: pip install "
                             "'artsearch[iiif]'") from None
    return iiif_prezi3


@dataclass
class Work:
    id: int
    path: str
    title: str | None
    artist: str | None
    date: str | None
    license: str | None
    width: int | None
    height: int | None
    extra: dict[str, Any] | None
    metadata: list[tuple[str, Any]]


def _canvas(manifest: Any, base_id: str, work: Work, n: int, image_base: str
            ) -> Any:
    extra = work.extra or {}
    w, h = work.width or 1000, work.height or 1000
    service = _url_or_none(extra.get("iiif_service"))
    canvas = manifest.make_canvas(id=f"{base_id}/canvas/{n}",
                                  label=_lang(work.title or Path(work.path).name),
                                  width=w, height=h)
    # The source's own image and service where the work came from IIIF (and they are URLs),
    # else artsearch serve's.
    image = (_url_or_none(extra.get("iiif_image")) or
             (f"{service}/full/max/0/default.jpg" if service else
              f"{image_base.rstrip('/')}/image/{work.id}"))
    page = canvas.add_image(image_url=image, anno_page_id=f"{base_id}/page/{n}",
                            anno_id=f"{base_id}/annotation/{n}", format="image/jpeg",
                            width=w, height=h)
    if service:
        page.items[0].body.service = [{
            "id": service, "type": extra.get("iiif_service_type") or "ImageService3",
            "profile": extra.get("iiif_profile") or "level0"}]
    canvas.metadata = [_entry(k, v) for k, v in work.metadata if v is not None] + [
        _entry(k, v) for k, v in (("artist", work.artist), ("date", work.date),
                                  ("licence", work.license),
                                  ("artsearch path", work.path),
                                  ("source canvas", extra.get("iiif_canvas")))
        if v]
    if work.license:
        canvas.requiredStatement = _entry("licence", work.license)
    return canvas


def _url_or_none(value: Any) -> str | None:
    """An http(s) URL from a work's catalogue, or None (an id that is not one would make the
    manifest invalid)."""
    if not isinstance(value, str):
        return None
    try:
        return _http_url(value)
    except IIIFError:
        return None


def _works(index: ArtIndex, ids: Iterable[int]) -> dict[int, Any]:
    from artsearch import catalogue

    return {a.id: a for a in catalogue.artworks(index, list(ids))}


def _work(art: Any, metadata: list[tuple[str, Any]]) -> Work:
    return Work(art.id, art.path, art.title, art.artist, art.date, art.license, art.width,
                art.height, art.extra, metadata)


def _write(manifest: Any, path: Path) -> dict[str, Any]:
    data = json.loads(manifest.json(indent=1))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return data  # type: ignore[no-any-return]


def _validated(build: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """A manifest writer whose refusals by the specification's model (pydantic raises a
    ValueError) become one line naming the file, not a traceback."""
    import functools

    @functools.wraps(build)
    def wrapper(index: ArtIndex, what: Any, path: Path, **kw: Any) -> dict[str, Any]:
        try:
            return build(index, what, path, **kw)
        except IIIFError:
            raise
        except ValueError as e:
            raise IIIFError(f"{path}: could not write a valid IIIF manifest ({e})") from e
    return wrapper


@_validated
def results_manifest(index: ArtIndex, result: Any, path: Path, *,
                     image_base: str = "http://127.0.0.1:8765",
                     manifest_id: str | None = None) -> dict[str, Any]:
    """Query results as a Presentation 3 manifest, one canvas per hit, best first."""
    from artsearch.provenance import provenance

    prezi = _prezi()
    base_id = (manifest_id or f"{image_base.rstrip('/')}/iiif/query").rstrip("/")
    query = result.query
    asked = query.get("path") or query.get("text") or query.get("image") or "a picture"
    manifest = prezi.Manifest(id=f"{base_id}/manifest.json",
                              label=_lang(f"Works nearest to {asked} (space {result.space})"))
    facts = provenance(index, result.space, command="query")
    manifest.metadata = [_entry("query", asked), _entry("space", result.space),
                         _entry("artsearch command", facts["command"]),
                         _entry("index", facts["index"]), _entry("made", facts["made"])]
    manifest.summary = _lang("Similarity scores are cosines in the named embedding space "
                             "(1 = the same vector); ranks are best first.")
    arts = _works(index, [h.id for h in result.hits])
    for n, hit in enumerate(result.hits, start=1):
        _canvas(manifest, base_id, _work(arts[hit.id], [
            ("rank", hit.rank), ("similarity score", f"{hit.score:.4f}"),
            ("space", result.space)]), n, image_base)
    return _write(manifest, path)


@_validated
def run_manifest(index: ArtIndex, run_id: int, path: Path, *,
                 image_base: str = "http://127.0.0.1:8765",
                 manifest_id: str | None = None) -> dict[str, Any]:
    """A clustering run as a Presentation 3 manifest: canvases ordered by cluster (nearest
    the centre first), one range per cluster, each canvas's cluster and distance in its
    metadata."""
    from artsearch.cluster import assignments, load_run
    from artsearch.provenance import provenance

    prezi = _prezi()
    stored = load_run(index, run_id)
    rows = assignments(index, run_id)
    base_id = (manifest_id or f"{image_base.rstrip('/')}/iiif/run-{run_id}").rstrip("/")
    run = stored.run
    manifest = prezi.Manifest(id=f"{base_id}/manifest.json", label=_lang(
        f"Clustering run {run_id}: {run.method}, k={run.k}, space {stored.space.name}"))
    facts = provenance(index, stored.space.name, command="cluster")
    manifest.metadata = [_entry("method", run.method), _entry("k", run.k),
                         _entry("seed", run.seed), _entry("space", stored.space.name),
                         _entry("index", facts["index"]), _entry("made", facts["made"])]
    by_path = {a.path: a for a in stored.artworks.values()}
    members: dict[int, list[str]] = {}
    for n, row in enumerate(rows, start=1):
        art = by_path[row["path"]]
        number = row["cluster"] + 1 if row["cluster"] >= 0 else "unclustered"
        canvas = _canvas(manifest, base_id, _work(art, [
            ("cluster", number), ("cosine distance to the centre", f"{row['distance']:.4f}")]),
            n, image_base)
        members.setdefault(row["cluster"], []).append(canvas.id)
    manifest.structures = [
        {"id": f"{base_id}/range/{c + 1 if c >= 0 else 'unclustered'}", "type": "Range",
         "label": _lang(f"cluster {c + 1} ({len(ids)} works)" if c >= 0
                        else f"unclustered ({len(ids)} works)"),
         "items": [{"id": i, "type": "Canvas"} for i in ids]}
        for c, ids in sorted(members.items())]
    return _write(manifest, path)
