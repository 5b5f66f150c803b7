"""Region index: find a motif in other works, and the work a detail comes from.

A space opts in with `artsearch index DIR --regions`. Each of its works is then described by
overlapping regions at two scales: the picture, resized so its long side is 448 and then
800 pixels (for a 224-pixel backbone), goes through the backbone's last convolutional stage
(Lite0's `stage7`, one cell per 32 pixels); a window half the long side of the first map and
about a quarter of the second's (7 cells each) slides over it three cells at a time, and
each window's cells are averaged and normalised. About 48 regions describe a work; each
keeps its box as fractions of the picture.

A query is a region of a picture (`--region X,Y,W,H`) or a whole fragment (`--in-regions`):
its pixels are resized to the backbone's input area keeping their shape and averaged the
same way, and works rank by their best-matching region. Measured on the 1,357-work dev set
(benchmarks/bench_regions.py): the source of a 10-30 % region is in the top 10 for 0.99 of
queries, of an enlarged 4-12 % detail for 0.95, against 0.20-0.55 cosine for whole pictures.

Where the regions are kept and how they are built and compressed: artsearch.region_store
(on the dev set's 65,368 regions, 8-bit codes: 320 bytes a region, about 1.7 GB for 100,000
works).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from sqlalchemy import and_, select

from artsearch.errors import BadImageError, NotIndexedError, OptionError
from artsearch.query import Hit, QueryResult

if TYPE_CHECKING:
    from artsearch.backbones import BackboneSpec
    from artsearch.extract import Extractor
    from artsearch.index import ArtIndex
    from artsearch.store import Space

__all__ = ["RegionHit", "describe_regions", "parse_box", "query_regions", "query_vector",
           "region_extractor", "region_layer", "region_pairs"]

# (long side of the resized picture for a 224-pixel backbone, window side as a fraction of
# the feature map's long side); windows step by STRIDE of their side.
SCALES = ((448, 0.5), (800, 0.28))
STRIDE = 3 / 7
SNAP = 32            # picture sides are multiples of the backbone's total stride
CANDIDATES = 300      # regions fetched per query (at least 30 per result asked for)


@dataclass
class RegionHit(Hit):
    box: list[float] = field(default_factory=list)  # x, y, w, h as fractions of the picture


def region_layer(spec: BackboneSpec) -> str:
    """The layer regions are cut from: a late stage that still has a spatial map."""
    return str(spec.extra.get("region_layer") or spec.default_layer)


def region_extractor(index: ArtIndex, sp: Space) -> Extractor:
    """The model that describes the space's regions (the app keeps one per space)."""
    from artsearch.extract import Extractor

    spec = index.spec_for(sp)
    # fp32 everywhere: a region index built on one CPU answers the same on another.
    return Extractor(spec, layer=(region_layer(spec),), pooling="avg", precision="fp32",
                     num_workers=0)


def _snap(n: float) -> int:
    return max(SNAP, int(round(n / SNAP)) * SNAP)


def _map(ex: Extractor, img: Image.Image, width: int, height: int) -> Any:
    import torch

    pixels = np.asarray(img.resize((width, height), Image.Resampling.BICUBIC), np.uint8)
    tensor = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None]
    return ex.feature_maps(tensor)[0][0]  # (C, h, w)


def _starts(cells: int, window: int, step: int) -> list[int]:
    starts = list(range(0, max(0, cells - window) + 1, step))
    if starts[-1] + window < cells:  # the last window lies flush with the edge
        starts.append(cells - window)
    return starts


def describe_regions(ex: Extractor, img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(unit descriptors (n, C), boxes (n, 4) as x, y, w, h fractions) of a picture."""
    import torch

    unit = ex.spec.preprocess.size / 224
    w, h = img.size
    vectors, boxes = [], []
    for long_side, fraction in SCALES:
        s = long_side * unit / max(w, h)
        fmap = _map(ex, img, _snap(w * s), _snap(h * s))
        ch, cw = fmap.shape[1:]
        if max(ch, cw) < 2:
            raise OptionError(
                f"backbone {ex.spec.name!r} layer {ex.layers[0]!r} gives no spatial map, so "
                "it cannot describe regions; use a convolutional backbone's space")
        window = max(1, round(fraction * max(ch, cw)))
        step = max(1, round(window * STRIDE))
        # Sums over any window from one integral image.
        integral = torch.nn.functional.pad(fmap, (1, 0, 1, 0)).cumsum(1).cumsum(2)
        for y0 in _starts(ch, window, step):
            y1 = min(ch, y0 + window)
            for x0 in _starts(cw, window, step):
                x1 = min(cw, x0 + window)
                total = (integral[:, y1, x1] - integral[:, y0, x1] - integral[:, y1, x0]
                         + integral[:, y0, x0])
                vectors.append((total / ((y1 - y0) * (x1 - x0))).numpy())
                boxes.append((x0 / cw, y0 / ch, (x1 - x0) / cw, (y1 - y0) / ch))
    out = np.asarray(vectors, np.float32)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out, np.asarray(boxes, np.float32)


def query_vector(ex: Extractor, img: Image.Image) -> np.ndarray:
    """(1, C): a fragment described as one region, at the backbone's own input area."""
    side = ex.spec.preprocess.size
    w, h = img.size
    s = math.sqrt(side * side / (w * h))
    fmap = _map(ex, img, _snap(w * s), _snap(h * s))
    v: np.ndarray = fmap.mean((1, 2)).numpy()[None].astype(np.float32)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def parse_box(text: str) -> tuple[float, float, float, float]:
    """`X,Y,W,H` as fractions of the picture (0-1), inside it, W and H above zero."""
    try:
        x, y, w, h = (float(p) for p in text.split(","))
    except ValueError:
        x = y = w = h = float("nan")
    eps = 2e-3  # three decimals, rounded (as the app's box tool writes them)
    if not (all(math.isfinite(v) for v in (x, y, w, h)) and x >= 0 and y >= 0 and w > 0
            and h > 0 and x + w <= 1 + eps and y + h <= 1 + eps):
        raise OptionError(
            f"--region {text!r}: give X,Y,W,H as fractions of the picture, e.g. "
            "0.25,0.1,0.5,0.4 (left, top, width, height; the box must lie inside it)")
    return x, y, min(w, 1 - x), min(h, 1 - y)


def crop_box(img: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    w, h = img.size
    x0, y0 = int(round(box[0] * w)), int(round(box[1] * h))
    x1 = max(x0 + 1, int(round((box[0] + box[2]) * w)))
    y1 = max(y0 + 1, int(round((box[1] + box[3]) * h)))
    return img.crop((x0, y0, min(w, x1), min(h, y1)))


# -- querying --------------------------------------------------------------------------------


def query_regions(
    index: ArtIndex,
    *,
    space: str = "content",
    image: Path | None = None,
    image_bytes: bytes | None = None,
    artwork: int | str | None = None,
    box: tuple[float, float, float, float] | None = None,
    k: int = 10,
    where: dict[str, list[str]] | None = None,
    make_extractor: Callable[[Space], Extractor] | None = None,
) -> QueryResult:
    """Works ranked by their best region against a region of a picture (`box`) or a whole
    fragment. The query's own work (an indexed id or path, or an indexed file) is left out:
    the question is where else the motif appears."""
    from artsearch.catalogue import check_fields, find_artwork, where_conditions
    from artsearch.explain import decoded, read_work
    from artsearch.images import read_file, sha256_bytes
    from artsearch.region_store import load_regions, space_works
    from artsearch.store import Artwork

    if k < 1:
        raise OptionError(f"-k {k}: ask for at least one result")
    sp = index.space(space)
    stored = load_regions(index, sp, cached=True)
    if stored is None:
        raise NotIndexedError(
            f"space {sp.name!r} of {index.path} has no region index; build it with "
            f"`artsearch index FOLDER --index {index.path} --space {sp.name} --regions`")
    notes: list[str] = []
    own: int | None = None
    described: dict[str, Any]
    if artwork is not None:
        art = (find_artwork(index, id=int(artwork)) if str(artwork).isdigit()
               else find_artwork(index, path=str(artwork)))
        if art is None:
            raise NotIndexedError(f"{artwork}: no such artwork in {index.path}; `artsearch "
                                  "info --works` lists the indexed paths")
        data = read_work(index.root, art.path)
        if data is None:
            raise BadImageError(f"{art.path}: its file cannot be read inside the collection; "
                                "re-run `artsearch index`")
        own = art.id
        described = {"id": art.id, "path": art.path, "indexed": True}
    else:
        if image_bytes is not None:
            data = image_bytes
        elif image is not None:
            try:
                data = read_file(image)
            except BadImageError as e:
                raise BadImageError(f"{image}: {e}") from e
        else:
            raise OptionError("give an image, or --id with --region")
        same = find_artwork(index, sha256=sha256_bytes(data))
        own = same.id if same is not None else None
        described = {"image": str(image) if image is not None else "upload",
                     "indexed": own is not None, **({"id": own} if own else {})}
    picture = decoded(data)
    if picture is None:
        raise BadImageError(f"{described.get('path') or described.get('image')}: not a "
                            "readable image; give a JPEG, PNG, TIFF or WebP file")
    if box is not None:
        picture = crop_box(picture, box)
        described["region"] = [round(v, 4) for v in box]
    ex = (make_extractor or (lambda s: region_extractor(index, s)))(sp)
    q = query_vector(ex, picture)

    current = space_works(index, sp)
    unsearched = len(set(current) - set(stored.works))
    if unsearched:
        notes.append(f"{unsearched} works indexed since the region index was built are not "
                     "searched; run `artsearch index FOLDER --regions` to add them")
    check_fields(index, list(where or {}))
    allowed: set[int] | None = None
    if where:
        with index.store.session() as s:
            allowed = set(s.scalars(select(Artwork.id).where(
                and_(*where_conditions(index, where)))))
    n = int(stored.index.ntotal)
    wanted = min(n, max(CANDIDATES, 30 * k) * (10 if allowed is not None else 1))
    best: dict[int, tuple[float, int]] = {}
    if n:
        scores, rows = stored.index.search(q, wanted)
        for score, row in zip(scores[0].tolist(), rows[0].tolist(), strict=True):
            if row < 0:
                continue
            owner = int(stored.owners[row])
            if owner == own or owner not in current or owner in best or (
                    allowed is not None and owner not in allowed):
                continue
            best[owner] = (score, row)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]
    if own is not None:
        notes.append("the query's own work is left out")
    if len(ranked) < k and allowed is not None:
        notes.append(f"only {len(ranked)} works matching the filters have a region among "
                     f"the {wanted} nearest")
    with index.store.session() as s:
        arts = {a.id: a for a in s.scalars(select(Artwork).where(
            Artwork.id.in_([a for a, _ in ranked])))}
    hits: list[Hit] = [RegionHit(rank, round(score, 6), art.id, art.path, art.title, art.artist,
                      art.date, art.style, art.genre, art.extra,
                      box=[round(float(v), 4) for v in stored.boxes[row]])
            for rank, (a, (score, row)) in enumerate(ranked, 1) if (art := arts.get(a))]
    how = {"index": f"regions: {stored.meta.get('structure', 'flat')}",
           "regions": n, "candidates": wanted}
    return QueryResult(described, sp.name, hits, notes, how)


def region_pairs(index: ArtIndex, space: str, per_work: int = 2
                 ) -> list[tuple[int, int, float]]:
    """Candidate pairs (part, whole, region score) of a work and a work it may be a detail
    or crop of: each work's whole picture, asked as a fragment, against every other work's
    regions; its `per_work` best other works (the wholes). A pair found both ways is given
    once, in its better direction. Nothing (no pairs) without a region index.

    The score is a region cosine, not the space's: it says what to verify, not what the
    pair is."""
    from artsearch.region_store import load_regions, space_works

    sp = index.space(space)
    stored = load_regions(index, sp, cached=True)
    if stored is None or not stored.whole or not stored.index.ntotal:
        return []
    current = space_works(index, sp)
    ids = [a for a in sorted(stored.whole) if a in current]
    found: dict[tuple[int, int], tuple[float, int, int]] = {}
    wanted = min(int(stored.index.ntotal), CANDIDATES)
    for start in range(0, len(ids), 256):
        chunk = ids[start:start + 256]
        queries = np.stack([stored.whole[a] for a in chunk]).astype(np.float32)
        queries /= np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        scores, rows = stored.index.search(queries, wanted)
        for a, sc, rw in zip(chunk, scores.tolist(), rows.tolist(), strict=True):
            best: list[int] = []
            for score, row in zip(sc, rw, strict=True):
                owner = int(stored.owners[row]) if row >= 0 else a
                if owner == a or owner in best or owner not in current:
                    continue
                best.append(owner)
                key = (min(a, owner), max(a, owner))
                if key not in found or score > found[key][0]:
                    found[key] = (float(score), a, owner)
                if len(best) == per_work:
                    break
    return sorted(((part, whole, s) for s, part, whole in found.values()),
                  key=lambda p: (-p[2], p[0], p[1]))
