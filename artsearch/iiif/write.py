"""Writing IIIF: query results and clustering runs as Presentation 3 manifests (built and
validated by iiif-prezi3)."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artsearch.errors import ArtsearchError
from artsearch.iiif.fetching import IIIFError, http_url

if TYPE_CHECKING:
    from artsearch.index import ArtIndex

__all__ = ["results_manifest", "run_manifest", "set_manifest"]



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
    # The source picture's size where IIIF said it (not the downloaded copy's), else the
    # file's own.
    w = _pixels(extra.get("iiif_width")) or work.width or 1000
    h = _pixels(extra.get("iiif_height")) or work.height or 1000
    service = _url_or_none(extra.get("iiif_service"))
    version = {"ImageService1": 1, "ImageService2": 2}.get(str(extra.get("iiif_service_type")),
                                                            3)
    canvas = manifest.make_canvas(id=f"{base_id}/canvas/{n}",
                                  label=_lang(work.title or Path(work.path).name),
                                  width=w, height=h)
    # The source's own image and service where the work came from IIIF (and they are URLs),
    # else artsearch serve's. `full/full` is the whole picture at full size in every 1.x and
    # 2.x (2.0 does not know `max`); `native` is 1.x's name for the default quality.
    whole = {1: "full/full/0/native.jpg", 2: "full/full/0/default.jpg"}.get(
        version, "full/max/0/default.jpg")
    image = (_url_or_none(extra.get("iiif_image")) or
             (f"{service}/{whole}" if service else
              f"{image_base.rstrip('/')}/image/{work.id}"))
    page = canvas.add_image(image_url=image, anno_page_id=f"{base_id}/page/{n}",
                            anno_id=f"{base_id}/annotation/{n}", format="image/jpeg",
                            width=w, height=h)
    if service:
        page.items[0].body.service = [_service_entry(service, version,
                                                     str(extra.get("iiif_profile") or "level0"))]
    canvas.metadata = [_entry(k, v) for k, v in work.metadata if v is not None] + [
        _entry(k, v) for k, v in (("artist", work.artist), ("date", work.date),
                                  ("licence", work.license),
                                  ("artsearch path", work.path),
                                  ("source canvas", extra.get("iiif_canvas")))
        if v]
    if work.license:
        canvas.requiredStatement = _entry("licence", work.license)
    return canvas


def _pixels(value: Any) -> int | None:
    try:
        n = int(str(value))
    except ValueError:
        return None
    return n if 0 < n < 1_000_000 else None


def _service_entry(service: str, version: int, level: str) -> dict[str, Any]:
    """The image service as its own version writes it: Presentation 3 embeds 1.x and 2.x
    services with their @id, @type and full profile URI, 3.x with id, type and level."""
    number = level.removeprefix("level") if level.startswith("level") else "0"
    if version == 1:
        return {"@id": service, "@type": "ImageService1",
                "profile": "http://library.stanford.edu/iiif/image-api/1.1/"
                           f"compliance.html#level{number}"}
    if version == 2:
        return {"@id": service, "@type": "ImageService2",
                "profile": f"http://iiif.io/api/image/2/level{number}.json"}
    return {"id": service, "type": "ImageService3", "profile": f"level{number}"}


def _url_or_none(value: Any) -> str | None:
    """An http(s) URL from a work's catalogue, or None (an id that is not one would make the
    manifest invalid)."""
    if not isinstance(value, str):
        return None
    try:
        return http_url(value)
    except IIIFError:
        return None


def _works(index: ArtIndex, ids: Iterable[int]) -> dict[int, Any]:
    from artsearch.index import catalogue

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
        box = getattr(hit, "box", None)  # a region query's hit: the part that matched
        more = [("matching region", _box_text(box))] if box else []
        canvas = _canvas(manifest, base_id, _work(arts[hit.id], [
            ("rank", hit.rank), ("similarity score", f"{hit.score:.4f}"),
            ("space", result.space), *more]), n, image_base)
        if box:
            _region_annotation(canvas, base_id, n, _in_canvas(
                box, (arts[hit.id].extra or {}).get("iiif_region"), canvas.width,
                canvas.height), hit.score)
    return _write(manifest, path)


def _box_text(box: list[float]) -> str:
    x, y, w, h = box
    return f"x {x:.0%}, y {y:.0%}, {w:.0%} wide, {h:.0%} high"


def _in_canvas(box: list[float], region: Any, cw: int, ch: int) -> tuple[int, ...]:
    """A box in the indexed picture (fractions) as x, y, w, h in the canvas's pixels. Where
    the work was a part of a IIIF image (`#xywh=`, kept as `iiif_region`: pixels, or `pct:`
    percent), the box lies inside that part (the image taken to fill its canvas, as IIIF's
    usually do)."""
    rx, ry, rw, rh = 0.0, 0.0, float(cw), float(ch)
    if isinstance(region, str) and region:
        try:
            values = [float(v) for v in region.removeprefix("pct:").split(",")]
        except ValueError:
            values = []
        if len(values) == 4 and values[2] > 0 and values[3] > 0:
            rx, ry, rw, rh = values
            if region.startswith("pct:"):
                rx, ry, rw, rh = rx * cw / 100, ry * ch / 100, rw * cw / 100, rh * ch / 100
    x, y, w, h = box
    left = min(max(0, round(rx + x * rw)), cw - 1)
    top = min(max(0, round(ry + y * rh)), ch - 1)
    return (left, top, max(1, min(round(w * rw), cw - left)),
            max(1, min(round(h * rh), ch - top)))


def _region_annotation(canvas: Any, base_id: str, n: int, xywh: tuple[int, ...],
                       score: float) -> None:
    """The matching region as a tagging annotation on the canvas (`#xywh=` in the canvas's
    own pixels), so that viewers (Mirador) draw it over the picture."""
    canvas.make_annotation(
        id=f"{base_id}/region/{n}", motivation="tagging",
        body={"type": "TextualBody", "language": "en", "format": "text/plain",
              "value": f"the region matching the query (similarity {score:.4f})"},
        target=f"{canvas.id}#xywh={','.join(map(str, xywh))}",
        anno_page_id=f"{base_id}/regions/{n}")


@_validated
def set_manifest(index: ArtIndex, ids: list[int], path: Path, *, label: str,
                 image_base: str = "http://127.0.0.1:8765",
                 manifest_id: str | None = None) -> dict[str, Any]:
    """A light-table set as a Presentation 3 manifest, one canvas per work, in its order."""
    from artsearch.provenance import provenance

    prezi = _prezi()
    base_id = (manifest_id or f"{image_base.rstrip('/')}/light-table").rstrip("/")
    manifest = prezi.Manifest(id=f"{base_id}/manifest.json",
                              label=_lang(f"{label} (a light-table set, {len(ids)} works)"))
    facts = provenance(index, None, command="serve: light table")
    manifest.metadata = [_entry("set", label), _entry("index", facts["index"]),
                         _entry("made", facts["made"])]
    arts = _works(index, ids)
    for n, art_id in enumerate((i for i in ids if i in arts), start=1):
        _canvas(manifest, base_id, _work(arts[art_id], [("position in the set", n)]), n,
                image_base)
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
    # Range members are references to the canvases (id and type only), as Presentation 3
    # asks; a plain dict here would be read as a whole canvas with no content.
    manifest.structures = [
        prezi.Range(id=f"{base_id}/range/{c + 1 if c >= 0 else 'unclustered'}",
                    label=_lang(f"cluster {c + 1} ({len(ids)} works)" if c >= 0
                                else f"unclustered ({len(ids)} works)"),
                    items=[prezi.CanvasRef(id=i, type="Canvas") for i in ids])
        for c, ids in sorted(members.items())]
    return _write(manifest, path)

