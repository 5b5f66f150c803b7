"""IIIF in and out: index the canvases of Presentation 2 or 3 manifests and collections
through the Image API, and write query results or a clustering run as a Presentation 3
manifest that Mirador or Universal Viewer opens.

Reading. A manifest or collection (a file or an http(s) URL) is walked to its canvases; each
canvas's image is fetched at a bounded size — from its Image API service (for a level-0
static tree, one of the sizes its info.json lists), or the image itself when it has no
service — into INDEX/iiif-images/, under a name made from the canvas and image URIs. That
folder is then indexed like any collection, with title, creator, date, rights and the
manifest and canvas URIs as catalogue fields. A canvas whose picture is already there is not
fetched again, so a re-run fetches only what is new. Fetches time out, are retried (timeouts,
connection errors, 429 and 5xx) and run a few at a time; a canvas that cannot be fetched gets
one line naming it and the reason, and the run goes on. Nothing in a manifest names a local
file: only http(s) URLs are fetched, and file names are hashes.

Writing. Each work becomes a canvas whose image is its IIIF image where it came from one,
else `BASE/image/ID` of `artsearch serve`; scores, ranks and clusters are in the canvases'
metadata, the query and provenance in the manifest's. iiif-prezi3 builds the manifest, which
validates it against the specification's model.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artsearch import __version__
from artsearch.errors import ArtsearchError

if TYPE_CHECKING:
    from artsearch.index import ArtIndex
    from artsearch.indexing import IndexOptions, IndexReport

__all__ = ["Canvas", "FetchOptions", "FetchReport", "index_iiif", "read_canvases",
           "results_manifest", "run_manifest"]

FOLDER = "iiif-images"  # inside the index folder: the fetched pictures, indexed as a collection
CATALOGUE = "iiif-catalogue.csv"
MAX_JSON_BYTES = 64 << 20
MAX_DEPTH = 4  # collections within collections
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


class IIIFError(ArtsearchError):
    """A manifest or collection that cannot be read or is not IIIF."""


@dataclass
class FetchOptions:
    size: int = 1024  # longest side requested from the Image API
    timeout: float = 30.0  # seconds per request
    retries: int = 2  # further tries after a timeout, a dropped connection, 429 or 5xx
    concurrency: int = 4
    max_bytes: int = 64 << 20
    backoff: float = 0.5  # seconds before the first retry, doubling


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
        digest = hashlib.sha256(f"{self.canvas}\n{self.image}".encode()).hexdigest()
        return f"{hashlib.sha256(self.manifest.encode()).hexdigest()[:10]}/{digest[:16]}.jpg"


@dataclass
class FetchReport:
    canvases: int = 0
    fetched: int = 0
    already: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (canvas URI, reason)
    manifests: int = 0


# -- fetching ---------------------------------------------------------------------------------

def _http_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise IIIFError(f"{url[:200]}: not an http(s) URL; IIIF resources are fetched only "
                        "over http(s)")
    return url


def fetch(url: str, opts: FetchOptions, *, limit: int | None = None) -> bytes:
    """GET with a timeout, bounded size and retries of what may pass; IIIFError otherwise."""
    _http_url(url)
    limit = limit or opts.max_bytes
    delay = opts.backoff
    for attempt in range(opts.retries + 1):
        last = attempt == opts.retries
        try:
            request = urllib.request.Request(url, headers={
                "User-Agent": f"artsearch/{__version__}",
                "Accept": "application/ld+json, application/json, image/*;q=0.9, */*;q=0.5"})
            with urllib.request.urlopen(request, timeout=opts.timeout) as response:  # noqa: S310 - http(s) only, checked above
                data = response.read(limit + 1)
            if len(data) > limit:
                raise IIIFError(f"{url}: larger than {limit:,} bytes; not fetched")
            return data  # type: ignore[no-any-return]
        except urllib.error.HTTPError as e:
            if e.code not in RETRY_STATUS or last:
                raise IIIFError(f"HTTP {e.code} {e.reason} for {url}") from None
        except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            if last:
                what = "timed out" if isinstance(reason, TimeoutError) or \
                    "timed out" in str(reason) else f"failed ({reason})"
                raise IIIFError(f"{url}: {what} after {opts.retries + 1} tries "
                                f"(--iiif-timeout {opts.timeout:g} s)") from None
        time.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")


def load_json(source: str, opts: FetchOptions) -> dict[str, Any]:
    if re.match(r"^https?://", source, re.I):
        data = fetch(source, opts, limit=MAX_JSON_BYTES)
    else:
        path = Path(source)
        if not path.is_file():
            raise IIIFError(f"{source}: no such file, and not an http(s) URL")
        data = path.read_bytes()
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise IIIFError(f"{source}: not JSON ({e}); give a IIIF manifest or collection") from e
    if not isinstance(value, dict):
        raise IIIFError(f"{source}: not a IIIF manifest or collection (a JSON object)")
    return value


# -- reading manifests ----------------------------------------------------------------------

def _id(obj: Any) -> str | None:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        value = obj.get("id") or obj.get("@id")
        return value if isinstance(value, str) else None
    return None


def _type(obj: dict[str, Any]) -> str:
    kind = obj.get("type") or obj.get("@type") or ""
    kind = kind[0] if isinstance(kind, list) and kind else kind
    return str(kind).split(":")[-1].lower()


_TAGS = re.compile(r"<[^>]+>")


def text(value: Any) -> str | None:
    """A label or value as plain text: a v3 language map (English, then none, then the
    first), a v2 string, @value object or list; HTML tags dropped."""
    if value is None:
        return None
    if isinstance(value, dict):
        if "@value" in value:
            return text(value["@value"])
        for lang in ("en", "none", *value):
            if lang in value:
                return text(value[lang])
        return None
    if isinstance(value, list):
        parts = [t for t in (text(v) for v in value) if t]
        return "; ".join(parts) if parts else None
    out = html.unescape(_TAGS.sub("", str(value))).strip()
    return out or None


_FIELDS = {"artist": ("creator", "artist", "author", "maker", "painter", "attribution"),
           "date": ("date", "dated", "date created", "created", "creation date", "period"),
           "style": ("style", "movement", "school"), "genre": ("genre", "type", "object type")}


def _metadata(entries: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        label, value = (text(entry.get("label")) or "").lower(), text(entry.get("value"))
        for name, labels in _FIELDS.items():
            if label in labels and value and name not in out:
                out[name] = value
    return out


def _service(resource: dict[str, Any]) -> tuple[str | None, int, bool]:
    services = resource.get("service")
    services = services if isinstance(services, list) else [services] if services else []
    for svc in services:
        if not isinstance(svc, dict):
            continue
        kind = str(svc.get("type") or svc.get("@type") or "")
        context = str(svc.get("@context") or "")
        profile = json.dumps(svc.get("profile") or "")
        if "ImageService" in kind or "image" in context or "image" in profile:
            version = 2 if ("ImageService2" in kind or "/image/2" in context) else 3
            level0 = "level0" in profile.replace(" ", "")
            sid = _id(svc)
            if sid:
                return sid.rstrip("/"), version, level0
    return None, 3, False


def _profile(resource: dict[str, Any]) -> str | None:
    """The service's compliance level as a short name (level0, level1, level2)."""
    services = resource.get("service")
    for svc in services if isinstance(services, list) else [services]:
        if isinstance(svc, dict):
            found = re.search(r"level([012])", json.dumps(svc.get("profile") or ""))
            if found:
                return f"level{found.group(1)}"
    return None


def _manifest_canvases(doc: dict[str, Any], uri: str) -> list[Canvas]:
    label = text(doc.get("label"))
    meta = _metadata(doc.get("metadata"))
    rights = text(doc.get("rights")) or text(doc.get("license"))
    source = text((doc.get("requiredStatement") or {}).get("value")) \
        if isinstance(doc.get("requiredStatement"), dict) else text(doc.get("attribution"))
    if "sequences" in doc:  # Presentation 2
        sequences = doc.get("sequences") or []
        items = (sequences[0].get("canvases") or []) if sequences else []
        images = [[img.get("resource") or {} for img in (c.get("images") or [])
                   if isinstance(img, dict)] for c in items if isinstance(c, dict)]
    else:  # Presentation 3
        items = [c for c in doc.get("items") or [] if isinstance(c, dict)]
        images = []
        for c in items:
            bodies = []
            for page in c.get("items") or []:
                for anno in (page.get("items") or []) if isinstance(page, dict) else []:
                    body = anno.get("body") if isinstance(anno, dict) else None
                    for b in body if isinstance(body, list) else [body]:
                        if isinstance(b, dict) and _type(b) in ("image", ""):
                            bodies.append(b)
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
    up to MAX_DEPTH, each read once). A manifest of a collection that cannot be read is
    reported through `on_error` and skipped; the top-level source must be readable."""
    opts = opts or FetchOptions()
    seen: set[str] = set()
    out: list[Canvas] = []

    def walk(ref: str, doc: dict[str, Any] | None, depth: int) -> None:
        if ref in seen or depth > MAX_DEPTH:
            return
        seen.add(ref)
        if doc is None:
            try:
                doc = load_json(ref, opts)
            except IIIFError as e:
                if on_error is None:
                    raise
                on_error(ref, str(e))
                return
        kind = _type(doc)
        uri = _id(doc) or ref
        if kind == "manifest":
            out.extend(_manifest_canvases(doc, uri))
        elif kind == "collection":
            children = (doc.get("items") or []) + (doc.get("manifests") or []) + \
                (doc.get("collections") or [])
            for child in children:
                cid = _id(child)
                if not cid:
                    continue
                embedded = child if isinstance(child, dict) and (
                    "items" in child and _type(child) == "manifest" and any(
                        isinstance(i, dict) and "items" in i for i in child["items"])) \
                    else None
                walk(cid, embedded, depth + 1)
        else:
            raise IIIFError(f"{ref}: a {kind or 'JSON'} document, not a IIIF Manifest or "
                            "Collection")

    walk(source, None, 0)
    return out


def image_request(canvas: Canvas, opts: FetchOptions) -> str:
    """The URL of the canvas's picture at no more than opts.size on its longer side."""
    if canvas.service is None:
        if canvas.image is None:
            raise IIIFError("no image and no image service")
        return _http_url(canvas.image)
    base = _http_url(canvas.service)
    if canvas.level0:  # a static tree has only the sizes it lists
        info = json.loads(fetch(f"{base}/info.json", opts, limit=MAX_JSON_BYTES))
        sizes = [(int(s["width"]), int(s["height"])) for s in info.get("sizes") or []
                 if isinstance(s, dict) and "width" in s and "height" in s]
        if not sizes:
            w, h = int(info.get("width", 0)), int(info.get("height", 0))
            if not w or not h:
                raise IIIFError(f"{base}/info.json: a level-0 service that lists no sizes")
            sizes = [(w, h)]
        fitting = [s for s in sizes if max(s) <= opts.size]
        w, h = max(fitting, key=max) if fitting else min(sizes, key=max)
        region = f"{w}," if canvas.service_version == 2 else f"{w},{h}"
        return f"{base}/full/{region}/0/default.jpg"
    return f"{base}/full/!{opts.size},{opts.size}/0/default.jpg"


def fetch_canvases(canvases: Sequence[Canvas], folder: Path, opts: FetchOptions,
                   report: FetchReport, progress: Callable[[int], None] | None = None) -> None:
    """Fetch what is not in `folder` yet; each picture written whole (temporary name, then
    renamed), so a killed run leaves only complete files."""
    todo = []
    for c in canvases:
        if (folder / c.key).is_file():
            report.already += 1
        else:
            todo.append(c)

    def one(c: Canvas) -> tuple[Canvas, str | None]:
        try:
            data = fetch(image_request(c, opts), opts)
        except IIIFError as e:
            return c, str(e)
        path = folder / c.key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return c, None

    with ThreadPoolExecutor(max_workers=max(1, opts.concurrency)) as pool:
        for c, error in pool.map(one, todo):
            if error is None:
                report.fetched += 1
            else:
                report.failed.append((c.canvas, error))
            if progress is not None:
                progress(1)


def index_iiif(source: str, index: ArtIndex, options: IndexOptions,
               fetch_opts: FetchOptions | None = None,
               progress: Callable[[str], None] | None = None
               ) -> tuple[IndexReport, FetchReport]:
    """Fetch the canvases of a manifest or collection and index them (see the module)."""
    from artsearch.indexing import _record_failures, index_collection

    opts = fetch_opts or FetchOptions()
    report = FetchReport()
    errors: list[tuple[str, str]] = []
    canvases = read_canvases(source, opts, on_error=lambda ref, why: errors.append((ref, why)))
    report.canvases = len(canvases)
    report.manifests = len({c.manifest for c in canvases})
    folder = index.path / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(f"{len(canvases)} canvases in {report.manifests} manifest(s)")
    fetch_canvases(canvases, folder, opts, report)
    report.failed = errors + report.failed
    # The catalogue of everything fetched so far: earlier runs' rows are kept, this run's win.
    catalogue = index.path / CATALOGUE
    rows: dict[str, dict[str, Any]] = {}
    if catalogue.is_file():
        with catalogue.open(newline="", encoding="utf-8") as fh:
            rows = {r["path"]: r for r in csv.DictReader(fh)}
    for c in canvases:
        if (folder / c.key).is_file():
            rows[c.key] = {"path": c.key, **c.fields}
    columns = ["path", "title", "artist", "date", "style", "genre", "license", "source",
               "iiif_manifest", "iiif_canvas", "iiif_service", "iiif_image",
               "iiif_service_type", "iiif_profile"]
    tmp = catalogue.with_name(f".{catalogue.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows.values())
    os.replace(tmp, catalogue)
    if not rows:
        raise IIIFError(f"{source}: no canvas picture could be fetched ("
                        + (report.failed[0][1] if report.failed else "no canvases with images")
                        + ")")
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
    canvas = manifest.make_canvas(id=f"{base_id}/canvas/{n}",
                                  label=_lang(work.title or Path(work.path).name),
                                  width=w, height=h)
    service = extra.get("iiif_service")
    # The source's own image and service where the work came from IIIF, else artsearch serve.
    image = (extra.get("iiif_image") or (f"{service}/full/max/0/default.jpg" if service else
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
