"""Reading IIIF Presentation 2 and 3 manifests and collections into canvases. Manifests are
other people's JSON: every value is checked for its type where it is read, and a part of the
wrong shape is skipped, never trusted."""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from artsearch.iiif.fetching import (
    MAX_JSON_BYTES,
    FetchOptions,
    IIIFError,
    clean,
    fetch,
    http_url,
    load_json,
)
from artsearch.textsafe import one_line, terminal

__all__ = ["MAX_DEPTH", "Canvas", "image_request", "read_canvases", "text"]

MAX_DEPTH = 4  # collections within collections


Region = tuple[str, float, float, float, float]  # ("px" | "pct", x, y, w, h)
Crop = tuple[float, float, float, float]  # fractions of a picture: x0, y0, x1, y1
# What an annotation paints: the image resource, the part of it selected, its rotation.
Painted = tuple[dict[str, Any], Region | None, int]


@dataclass
class Canvas:
    manifest: str
    canvas: str
    image: str | None  # the image resource's id
    service: str | None  # its Image API service, if any
    service_version: int  # Image API 1, 2 or 3
    level: int | None  # the service's compliance level, when it declares one
    fields: dict[str, str | None]
    width: int | None = None  # the image resource's own size, when given
    height: int | None = None
    region: Region | None = None  # a SpecificResource's selected part of the image
    rotation: int = 0  # an ImageApiSelector's rotation, degrees clockwise (0, 90, 180, 270)

    @property
    def level0(self) -> bool:
        return self.level == 0

    @property
    def key(self) -> str:
        raw = f"{self.canvas}\n{self.image}".encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(raw).hexdigest()
        manifest = hashlib.sha256(self.manifest.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{manifest[:10]}/{digest[:16]}.jpg"



# Manifests are other people's JSON: every value is checked for its type where it is read,
# and a part of the wrong shape is skipped, never trusted.

def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value] if isinstance(value, dict) else []


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in _list(value) if isinstance(v, dict)]


def _id(obj: Any) -> str | None:
    if isinstance(obj, str):
        return clean(obj) if obj.strip() else None
    if isinstance(obj, dict):
        value = obj.get("id") or obj.get("@id")
        return clean(value) if isinstance(value, str) and value.strip() else None
    return None


def _type(obj: dict[str, Any]) -> str:
    kind = obj.get("type") or obj.get("@type") or ""
    kind = kind[0] if isinstance(kind, list) and kind else kind
    return clean(kind).split(":")[-1].lower() if isinstance(kind, str) else ""


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
    out = html.unescape(_TAGS.sub("", clean(str(value)))).strip()
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


def _service(resource: dict[str, Any]) -> tuple[str | None, int, int | None]:
    """(the image service's id, its Image API version 1, 2 or 3, its level or None)."""
    for svc in _dicts(resource.get("service")):
        kind = _type(svc)
        context = json.dumps(svc.get("@context") or "")
        profile = json.dumps(svc.get("profile") or "")
        if "imageservice" in kind or "image" in context or "image" in profile:
            version = _version(kind, context, profile)
            found = re.search(r"level([012])", profile)
            sid = _id(svc)
            if sid:
                return sid.rstrip("/"), version, int(found.group(1)) if found else None
    return None, 3, None


def _version(kind: str, context: str, profile: str) -> int:
    """A service's Image API version: its type says it first (ImageService3/2/1), then its
    context, and only then its profile (a 2.x service may name a 1.1 level URI)."""
    for text_ in (kind, context):
        for v in (3, 2, 1):
            if f"imageservice{v}" in text_ or f"/image/{v}" in text_ or \
                    f"image-api/{v}" in text_:
                return v
    if "image-api/1" in profile or "/image/1" in profile:
        return 1
    if "/image/2" in profile:
        return 2
    return 3


def _profile(resource: dict[str, Any]) -> str | None:
    """The service's compliance level as a short name (level0, level1, level2)."""
    for svc in _dicts(resource.get("service")):
        found = re.search(r"level([012])", json.dumps(svc.get("profile") or ""))
        if found:
            return f"level{found.group(1)}"
    return None


_XYWH = re.compile(r"^(?:(pixel|percent):)?\s*([\d.]+),([\d.]+),([\d.]+),([\d.]+)$")


def _selected(selector: Any) -> Region | None:
    """The part of an image a selector names: an ImageApiSelector's region (x,y,w,h or
    pct:...) or a FragmentSelector's xywh=...; None for the whole image or one not read."""
    for sel in _dicts(selector):
        kind = _type(sel)
        if kind == "imageapiselector" and isinstance(sel.get("region"), str):
            value = sel["region"].strip()
            unit = "pct" if value.startswith("pct:") else "px"
            found = _XYWH.match(value.removeprefix("pct:"))
        elif kind == "fragmentselector" and isinstance(sel.get("value"), str):
            found = _XYWH.match(sel["value"].strip().removeprefix("xywh="))
            unit = "pct" if found and found.group(1) == "percent" else "px"
        else:
            continue
        if found:
            x, y, w, h = (float(v) for v in found.groups()[1:])
            if w > 0 and h > 0:
                return unit, x, y, w, h
    return None


def _rotation(selector: Any) -> int:
    """The clockwise rotation an ImageApiSelector asks for (0 when none, or one that is not
    a multiple of 90: those are not applied)."""
    for sel in _dicts(selector):
        if _type(sel) == "imageapiselector":
            try:
                degrees = float(str(sel.get("rotation", "0")).lstrip("!"))
            except ValueError:
                continue
            if degrees % 90 == 0:
                return int(degrees) % 360
    return 0


_FRAGMENT = re.compile(r"#xywh=([^&#]+)$")


def _fragment(body: dict[str, Any]) -> Painted:
    """An image whose id ends in a media fragment (#xywh=x,y,w,h, or percent:...) names a
    part of the picture: the image without the fragment, and that part."""
    ident = _id(body)
    found = _FRAGMENT.search(ident or "")
    if ident is None or found is None:
        return body, None, 0
    region = _selected({"type": "FragmentSelector", "value": f"xywh={found.group(1)}"})
    plain = {k: v for k, v in body.items() if k not in ("id", "@id")}
    plain["id"] = ident[: found.start()]
    return plain, region, 0


def _image_body(body: dict[str, Any], depth: int = 0) -> Painted | None:
    """The image resource of an annotation body — itself, a Choice's default or first item,
    or a SpecificResource's source — with the region a SpecificResource selects."""
    kind = _type(body)
    if depth > 4:
        return None
    if kind == "choice":
        options = _dicts(body.get("default")) + _dicts(body.get("item")) + \
            _dicts(body.get("items"))
        return _image_body(options[0], depth + 1) if options else None
    if kind == "specificresource":  # Presentation 2 names the image `full`, 3 `source`
        source = body.get("source") or body.get("full")
        source = source if isinstance(source, dict) else {"id": source} \
            if isinstance(source, str) else None
        found = _image_body(source, depth + 1) if source else None
        if found is None:
            return None
        selector = body.get("selector")
        return (found[0], _selected(selector) or found[1],
                _rotation(selector) or found[2])
    if kind not in ("image", ""):
        return None
    if not (_id(body) or _dicts(body.get("service"))):
        return None
    return _fragment(body)


def _manifest_canvases(doc: dict[str, Any], uri: str) -> list[Canvas]:
    label = text(doc.get("label"))
    meta = _metadata(doc.get("metadata"))
    rights = text(doc.get("rights")) or text(doc.get("license"))
    statement = doc.get("requiredStatement")
    source = text(statement.get("value")) if isinstance(statement, dict) \
        else text(doc.get("attribution"))
    items: list[dict[str, Any]] = []
    images: list[list[Painted]] = []
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
        body, region, rotation = bodies[0]
        service, version, level = _service(body)
        clabel = text(c.get("label"))
        title = (f"{label}, {clabel}" if several and clabel and label else
                 label or clabel)
        fields = {"title": title, "license": rights, "source": source, **meta,
                  **_metadata(c.get("metadata")), "iiif_manifest": uri, "iiif_canvas": cid,
                  "iiif_service": service, "iiif_image": _id(body),
                  "iiif_service_type": (f"ImageService{version}" if version > 1 else
                                        "ImageService1") if service else None,
                  "iiif_profile": _profile(body) if service else None,
                  "iiif_width": _str_or_none(_pixels(c.get("width")) or
                                             _pixels(body.get("width"))),
                  "iiif_height": _str_or_none(_pixels(c.get("height")) or
                                              _pixels(body.get("height")))}
        date = text(c.get("navDate")) or text(doc.get("navDate"))
        if date and not fields.get("date"):
            fields["date"] = date
        if region is not None:
            fields["iiif_region"] = ("pct:" if region[0] == "pct" else "") + ",".join(
                f"{v:g}" for v in region[1:])
        canvases.append(Canvas(uri, cid, _id(body), service, version, level, fields,
                               _pixels(body.get("width")), _pixels(body.get("height")),
                               region, rotation))
    return canvases


def _embedded(child: Any) -> bool:
    """A collection member given with its content (a manifest with canvases, a collection
    with members), walked as it stands rather than fetched."""
    if not isinstance(child, dict):
        return False
    kind = _type(child)
    if kind == "manifest":
        return bool(child.get("sequences")) or any(
            "items" in i for i in _dicts(child.get("items")))
    if kind == "collection":
        return any(_list(child.get(f)) for f in ("items", "manifests", "collections",
                                                   "members"))
    return False


def _digest(doc: dict[str, Any]) -> str:
    text_ = json.dumps(doc, sort_keys=True, default=str)[:1_000_000]
    return hashlib.sha256(text_.encode("utf-8", "surrogatepass")).hexdigest()[:16]


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

    def take(ref: str) -> bool:
        """Count a document to read; False (said once) past opts.max_documents."""
        read[0] += 1
        if read[0] == opts.max_documents + 1:
            fail(ref, f"more than {opts.max_documents:,} documents in one run; the rest were "
                      "not read")
        return read[0] <= opts.max_documents

    def walk(ref: str, doc: dict[str, Any] | None, depth: int) -> None:
        top = depth == 0
        # A member embedded with its content is known by (id, content): collections repeat
        # their own id on embedded members, and one id may be embedded with other content.
        key = ref if doc is None else f"{ref}#{_digest(doc)}"
        if key in seen:
            return
        seen.add(key)
        if depth > MAX_DEPTH:
            fail(ref, f"collections nested more than {MAX_DEPTH} deep; not read")
            return
        if doc is None:
            if not take(ref):
                return
            try:
                doc = load_json(ref, opts, local=top)
            except IIIFError as e:
                if top:
                    raise
                fail(ref, str(e))
                return
        kind = _type(doc)
        uri = _id(doc) or ref
        if uri != ref and key == ref:
            if uri in seen:  # the same document reached under another address
                return
            seen.add(uri)
        if kind == "manifest":
            for c in _manifest_canvases(doc, uri):
                out.setdefault(c.key, c)
        elif kind == "collection":
            children = [*_list(doc.get("items")), *_list(doc.get("manifests")),
                        *_list(doc.get("collections")), *_list(doc.get("members"))]
            page = _id(doc.get("first"))
            while page and page not in seen:  # a paged collection (first, next, ...)
                seen.add(page)
                if not take(page):
                    break
                try:
                    part = load_json(page, opts)
                except IIIFError as e:
                    fail(page, str(e))
                    break
                children += [*_list(part.get("items")), *_list(part.get("manifests")),
                             *_list(part.get("collections")), *_list(part.get("members"))]
                page = _id(part.get("next"))
            for child in children:
                cid = _id(child)
                if not cid:
                    continue
                walk(cid, child if _embedded(child) else None, depth + 1)
        else:
            why = (f"{terminal(ref)}: a {terminal(kind[:40]) or 'JSON'} document, not a IIIF "
                   "Manifest or Collection")
            if top:
                raise IIIFError(why)
            fail(ref, why)

    walk(clean(source), None, 0)
    return list(out.values())


def _str_or_none(value: int | None) -> str | None:
    return str(value) if value is not None else None


def _pixels(value: Any) -> int | None:
    """A width or height from info.json: a positive whole number, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and 0 < value <= 1_000_000 else None


def _info(base: str, opts: FetchOptions) -> dict[str, Any]:
    raw = fetch(f"{base}/info.json", opts, limit=MAX_JSON_BYTES)
    try:
        info = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise IIIFError(f"{base}/info.json: not JSON; the image service is broken") from None
    if not isinstance(info, dict):
        raise IIIFError(f"{base}/info.json: not an image information document")
    return info


def _fractions(region: Region, width: int | None, height: int | None) -> Crop | None:
    """A region as fractions of the image (x0, y0, x1, y1), clipped to it; None when a
    pixel region cannot be placed (the image's size is unknown)."""
    unit, x, y, w, h = region
    if unit == "pct":
        box = (x / 100, y / 100, (x + w) / 100, (y + h) / 100)
    elif width and height:
        box = (x / width, y / height, (x + w) / width, (y + h) / height)
    else:
        return None
    x0, y0, x1, y1 = (min(max(v, 0.0), 1.0) for v in box)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def turn_locally(canvas: Canvas) -> int:
    """Degrees to turn the fetched picture by: the rotation a server was not asked for."""
    return canvas.rotation if canvas.service is None or canvas.level == 0 else 0


def image_request(canvas: Canvas, opts: FetchOptions) -> tuple[str, Crop | None]:
    """The URL of the canvas's picture (or its selected region) at no more than opts.size on
    its longer side, asked as the service's level allows — listed sizes for level 0, `w,`
    for level 1, `!w,h` for level 2 — with the quality its version names (`native` for
    Image API 1.x), turned by the canvas's rotation where the level allows (level 0 and
    plain images are turned after the fetch: `turn_locally`); and the part of the fetched
    picture to keep, when the region could not be asked of the server."""
    region = canvas.region
    if canvas.service is None:
        if canvas.image is None:
            raise IIIFError("no image and no image service")
        crop = _fractions(region, canvas.width, canvas.height) if region else None
        if region and crop is None:
            raise IIIFError(f"{canvas.image}: a region in pixels of an image of unknown size")
        return http_url(canvas.image), crop
    base = http_url(canvas.service).rstrip("/")
    quality = "native" if canvas.service_version == 1 else "default"
    if canvas.level == 0:  # a static tree has only the sizes it lists
        info = _info(base, opts)
        sizes = [(w, h) for w, h in ((_pixels(s.get("width")), _pixels(s.get("height")))
                                     for s in _dicts(info.get("sizes"))) if w and h]
        full = (_pixels(info.get("width")), _pixels(info.get("height")))
        if not sizes:
            if not full[0] or not full[1]:
                raise IIIFError(f"{base}/info.json: a level-0 service that lists no usable "
                                "sizes")
            sizes = [(full[0], full[1])]
        fitting = [s for s in sizes if max(s) <= opts.size]
        w, h = max(fitting, key=max) if fitting else min(sizes, key=max)
        size = f"{w}," if canvas.service_version < 3 else f"{w},{h}"
        crop = _fractions(region, full[0] or canvas.width, full[1] or canvas.height) \
            if region else None
        if region and crop is None:
            raise IIIFError(f"{base}: a region of an image whose size info.json does not say")
        return f"{base}/full/{size}/0/{quality}.jpg", crop  # level 0: turned after the fetch
    area = "full"
    wide: float | None = canvas.width
    tall: float | None = canvas.height
    if region:
        unit, x, y, rw, rh = region
        area = ("pct:" if unit == "pct" else "") + ",".join(
            f"{v:g}" if unit == "pct" else f"{round(v)}" for v in (x, y, rw, rh))
        wide, tall = (rw, rh) if unit == "px" else (None, None)
    if canvas.level == 1:  # `!w,h` is level 2: ask for a width that keeps the long side
        across = opts.size if not (wide and tall) or wide >= tall else \
            max(1, round(opts.size * wide / tall))
        size = f"{min(across, round(wide)) if wide else across},"
    else:
        size = f"!{opts.size},{opts.size}"
    return f"{base}/{area}/{size}/{canvas.rotation}/{quality}.jpg", None



