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

Storage: one file per space, `regions/space-ID.npz` in the index folder, replaced
atomically (and every CHECKPOINT_SECONDS of a long run): the FAISS index, each region's work
id and box, and the content hash of every work described, so a re-run adds new and changed
works and drops removed ones. Up to EXACT_UP_TO regions the index is exact; above, it is
the smallest code (product, then 4- and 8-bit scalar quantisation) that keeps the
whole-picture ANN's recall bar for the ten best works of sample queries: on the dev set's
65,368 regions that is 8-bit codes (recall 0.995; PQ40 kept 0.73, 4-bit 0.92), 320 bytes a
region, about 1.6 GB for 100,000 works.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from sqlalchemy import and_, select

from artsearch.ann import RECALL_BAR
from artsearch.errors import BadImageError, NotIndexedError, OptionError
from artsearch.query import Hit, QueryResult

if TYPE_CHECKING:
    from artsearch.backbones import BackboneSpec
    from artsearch.extract import Extractor
    from artsearch.index import ArtIndex
    from artsearch.store import Space

__all__ = ["BuildReport", "RegionHit", "build_regions", "describe_regions", "has_regions",
           "parse_box", "query_regions", "region_extractor", "region_layer", "region_pairs"]

# (long side of the resized picture for a 224-pixel backbone, window side as a fraction of
# the feature map's long side); windows step by STRIDE of their side.
SCALES = ((448, 0.5), (800, 0.28))
STRIDE = 3 / 7
SNAP = 32            # picture sides are multiples of the backbone's total stride
EXACT_UP_TO = 50_000  # regions searched exactly; above, product-quantised
TRAIN_SAMPLE = 100_000
WORK_RECALL_BAR = RECALL_BAR  # a code must keep this share of each query's ten best works
CHECKPOINT_SECONDS = 120.0
CANDIDATES = 300      # regions fetched per query (at least 30 per result asked for)
FORMAT = 2


@dataclass
class RegionHit(Hit):
    box: list[float] = field(default_factory=list)  # x, y, w, h as fractions of the picture


@dataclass
class BuildReport:
    space: str
    works: int = 0          # works described after the run
    added: int = 0
    removed: int = 0
    regions: int = 0
    seconds: float = 0.0
    structure: str = ""
    work_recall: float | None = None  # PQ only: share of exact top-10 works kept
    skipped: list[tuple[str, str]] = field(default_factory=list)


def region_layer(spec: BackboneSpec) -> str:
    """The layer regions are cut from: a late stage that still has a spatial map."""
    return str(spec.extra.get("region_layer") or spec.default_layer)


def _extractor(index: ArtIndex, sp: Space) -> Extractor:
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


# -- storage ---------------------------------------------------------------------------------


@dataclass
class _Regions:
    index: Any               # faiss index, row i = region i
    owners: np.ndarray       # (n,) int64 artwork id
    boxes: np.ndarray        # (n, 4) float32
    works: dict[int, str]    # artwork id -> content hash described
    meta: dict[str, Any]
    # artwork id -> the whole picture described as one fragment (as a query is): what
    # `duplicates` asks of the regions to find the works a work may be a detail of
    whole: dict[int, np.ndarray] = field(default_factory=dict)


def _path(index: ArtIndex, sp: Space) -> Path:
    return index.path / "regions" / f"space-{sp.id}.npz"


def _identity(index: ArtIndex, sp: Space) -> dict[str, Any]:
    """What the descriptors depend on: a change means describing every work again."""
    spec = index.spec_for(sp)
    return {"format": FORMAT, "space_id": sp.id, "backbone": sp.backbone,
            "weights_sha256": sp.weights_sha256, "layer": region_layer(spec),
            "scales": [list(s) for s in SCALES], "stride": STRIDE, "precision": "fp32"}


def region_extractor(index: ArtIndex, sp: Space) -> Extractor:
    """The model that describes the space's regions (the app keeps one per space)."""
    return _extractor(index, sp)


def has_regions(index: ArtIndex, sp: Space) -> bool:
    return _path(index, sp).is_file()


_CACHE: dict[Path, tuple[tuple[int, int], _Regions]] = {}


def _load(index: ArtIndex, sp: Space, *, cached: bool = False) -> _Regions | None:
    """The stored regions; `cached` (queries, which never change them) keeps the last one
    read per file until the file is replaced."""
    import faiss

    path = _path(index, sp)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    stamp = (st.st_mtime_ns, st.st_size)
    if cached and path in _CACHE and _CACHE[path][0] == stamp:
        return _CACHE[path][1]
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        ids = z["work_ids"].tolist()
        works = dict(zip(ids, z["work_sha"].tolist(), strict=True))
        whole = dict(zip(ids, z["work_vecs"].astype(np.float32), strict=True))
        stored = _Regions(faiss.deserialize_index(z["faiss"]), z["owners"].astype(np.int64),
                          z["boxes"].astype(np.float32), works, meta, whole)
    if stored.index.ntotal != len(stored.owners):
        raise NotIndexedError(f"{path}: the region index does not match its boxes; delete "
                              "it and run `artsearch index FOLDER --regions` again")
    if cached:
        if len(_CACHE) >= 4:
            _CACHE.clear()
        _CACHE[path] = (stamp, stored)
    return stored


def _save(index: ArtIndex, sp: Space, r: _Regions) -> None:
    import faiss

    path = _path(index, sp)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    ids = np.array(sorted(r.works), np.int64)
    with open(tmp, "wb") as f:
        np.savez(f, faiss=faiss.serialize_index(r.index), owners=r.owners,
                 boxes=r.boxes.astype(np.float16), work_ids=ids,
                 work_sha=np.array([r.works[i] for i in ids.tolist()], dtype="U64"),
                 work_vecs=np.array([r.whole[i] for i in ids.tolist()], np.float16).reshape(
                     len(ids), -1),
                 meta=np.frombuffer(json.dumps(r.meta).encode(), np.uint8))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# -- building --------------------------------------------------------------------------------


def _space_works(index: ArtIndex, sp: Space) -> dict[int, tuple[str, str]]:
    """artwork id -> (path, content hash) of every work with a vector in the space."""
    from artsearch.store import Artwork, Embedding

    with index.store.session() as s:
        rows = s.execute(select(Artwork.id, Artwork.path, Artwork.sha256).join(
            Embedding, and_(Embedding.artwork_id == Artwork.id, Embedding.space_id == sp.id)))
        return {int(i): (p, h) for i, p, h in rows}


def build_regions(index: ArtIndex, space: str,
                  progress: Callable[[int, int], None] | None = None,
                  checkpoint_seconds: float = CHECKPOINT_SECONDS) -> BuildReport:
    """Describe the space's new and changed works by regions; drop removed ones.

    Each work's file is read through the collection's own reader (a link leading out of
    the collection is skipped, with its reason in the report). What is described is saved
    every `checkpoint_seconds`, so an interrupted run loses at most that much: a re-run
    describes only the works still missing."""
    from artsearch.explain import decoded, read_work

    index.lock()
    start = time.perf_counter()
    sp = index.space(space)
    report = BuildReport(space)
    identity = _identity(index, sp)
    current = _load(index, sp)
    if current is not None and {k: current.meta.get(k) for k in identity} != identity:
        current = None  # another backbone, weights or layout: describe everything again
    works = _space_works(index, sp)
    old = current.works if current is not None else {}
    gone = {a for a, sha in old.items() if a not in works or works[a][1] != sha}
    todo = sorted(a for a, (_, sha) in works.items() if old.get(a) != sha)
    if current is not None and gone:
        current = _merge(current, gone, None, np.zeros(0, np.int64), np.zeros((0, 4)), {}, {})
    ex = _extractor(index, sp) if todo else None
    min_side = round(max(s for s, _ in SCALES) * index.spec_for(sp).preprocess.size / 224)
    vecs: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    boxes: list[np.ndarray] = []
    described: dict[int, str] = {}
    whole: dict[int, np.ndarray] = {}
    last_save = time.perf_counter()

    def save() -> None:
        nonlocal current
        if vecs:
            current = _merge(current, set(), np.concatenate(vecs), np.concatenate(owners),
                             np.concatenate(boxes), described, whole)
            whole.clear()
            vecs.clear()
            owners.clear()
            boxes.clear()
            described.clear()
        if current is not None:
            current.meta = {**identity, "structure": current.meta.get("structure", "flat"),
                            "work_recall": current.meta.get("work_recall"),
                            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            _save(index, sp, current)

    for n, art in enumerate(todo, 1):
        rel, sha = works[art]
        img = decoded(read_work(index.root, rel), min_side=min_side)
        if img is None:
            report.skipped.append((rel, "not readable inside the collection (moved, changed, "
                                        "or a link leading out of it); re-run `artsearch "
                                        "index`"))
        else:
            assert ex is not None
            v, b = describe_regions(ex, img)
            vecs.append(v)
            boxes.append(b)
            owners.append(np.full(len(v), art, np.int64))
            described[art] = sha
            whole[art] = query_vector(ex, img)[0]
            report.added += 1
        if time.perf_counter() - last_save >= checkpoint_seconds:
            save()
            last_save = time.perf_counter()
        if progress is not None:
            progress(n, len(todo))
    if todo or gone:
        save()
    report.removed = len(gone)
    if current is not None:
        report.works, report.regions = len(current.works), int(current.index.ntotal)
        report.structure = current.meta["structure"]
        report.work_recall = current.meta["work_recall"]
    report.seconds = time.perf_counter() - start
    return report


def _merge(current: _Regions | None, gone: set[int], new_v: np.ndarray | None,
           new_o: np.ndarray, new_b: np.ndarray, described: dict[int, str],
           new_whole: dict[int, np.ndarray]) -> _Regions | None:
    """`current` less the works in `gone`, plus new regions: added to its codes when it is
    quantised, else to its exact vectors (quantised once they pass EXACT_UP_TO)."""
    import faiss

    if current is None and new_v is None:
        return None
    if current is not None and gone:
        keep = ~np.isin(current.owners, np.fromiter(gone, np.int64))
        # remove_ids keeps the order of what stays, so boxes and owners stay row-aligned.
        current.index.remove_ids(faiss.IDSelectorBatch(np.flatnonzero(~keep).astype(np.int64)))
        current.owners, current.boxes = current.owners[keep], current.boxes[keep]
        current.works = {a: s for a, s in current.works.items() if a not in gone}
        current.whole = {a: v for a, v in current.whole.items() if a not in gone}
    if new_v is None:
        assert current is not None
        return current
    if current is not None and current.meta.get("structure", "flat") != "flat":
        current.index.add(new_v)  # codes: encoded with what the structure learnt
        return _Regions(current.index, np.concatenate([current.owners, new_o]),
                        np.concatenate([current.boxes, new_b]),
                        {**current.works, **described}, current.meta,
                        {**current.whole, **new_whole})
    if current is not None and current.index.ntotal:
        all_v = np.concatenate([current.index.reconstruct_n(0, current.index.ntotal), new_v])
        all_o = np.concatenate([current.owners, new_o])
        all_b = np.concatenate([current.boxes, new_b])
        works = {**current.works, **described}
        whole = {**current.whole, **new_whole}
    else:
        all_v, all_o, all_b = new_v, new_o, new_b
        works, whole = dict(described), dict(new_whole)
    structure, recall, built = _structure(all_v, all_o)
    return _Regions(built, all_o, all_b, works, {"structure": structure, "work_recall": recall},
                    whole)


# Quantisers tried in order of size (bytes a region): product codes of d/8 and d/4 bytes,
# 4- and 8-bit scalar codes, half floats.
def _quantisers(d: int) -> list[tuple[str, Callable[[], Any]]]:
    import faiss

    ip = faiss.METRIC_INNER_PRODUCT
    sq = faiss.ScalarQuantizer
    out: list[tuple[str, Callable[[], Any]]] = [
        (f"PQ{m}", partial(faiss.IndexPQ, d, m, 8, ip))
        for m in (d // 8, d // 4) if m >= 1 and d % m == 0]
    out += [(name, partial(faiss.IndexScalarQuantizer, d, q, ip))
            for name, q in (("SQ4", sq.QT_4bit), ("SQ8", sq.QT_8bit), ("SQfp16", sq.QT_fp16))]
    return out


def _structure(vectors: np.ndarray, owners: np.ndarray) -> tuple[str, float | None, Any]:
    """Exact search while it is cheap; above EXACT_UP_TO regions, the smallest code that
    keeps RECALL_BAR (the whole-picture ANN's bar) of the exact top-10 works, for
    CALIBRATION_QUERIES stored regions asked as queries; exact again if none does."""
    import faiss

    from artsearch.ann import CALIBRATION_QUERIES

    d = vectors.shape[1]
    flat = faiss.IndexFlatIP(d)
    flat.add(vectors)
    if len(vectors) <= EXACT_UP_TO:
        return "flat", None, flat
    rng = np.random.default_rng(0)
    train = vectors[rng.choice(len(vectors), min(len(vectors), TRAIN_SAMPLE), replace=False)]
    probe = vectors[rng.choice(len(vectors), CALIBRATION_QUERIES, replace=False)]
    exact = _top_works(flat, probe, owners)
    for name, make in _quantisers(d):
        coded = make()
        coded.train(train)
        coded.add(vectors)
        found = _top_works(coded, probe, owners)
        recall = float(np.mean([len(a & b) / max(1, len(a)) for a, b in
                                zip(exact, found, strict=True)]))
        if recall >= WORK_RECALL_BAR:
            return name, round(recall, 4), coded
    return "flat", None, flat


def _top_works(index: Any, queries: np.ndarray, owners: np.ndarray, k: int = 10
               ) -> list[set[int]]:
    _, ids = index.search(queries, CANDIDATES)
    out = []
    for row in ids:
        seen: list[int] = []
        for j in row:
            if j >= 0 and (o := int(owners[j])) not in seen:
                seen.append(o)
                if len(seen) == k:
                    break
        out.append(set(seen))
    return out


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
    from artsearch.store import Artwork

    if k < 1:
        raise OptionError(f"-k {k}: ask for at least one result")
    sp = index.space(space)
    stored = _load(index, sp, cached=True)
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
    ex = (make_extractor or (lambda s: _extractor(index, s)))(sp)
    q = query_vector(ex, picture)

    current = _space_works(index, sp)
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
    """Candidate pairs (a < b, region score) of a work and a work it may be a detail or
    crop of: each work's whole picture, asked as a fragment, against every other work's
    regions; its `per_work` best other works. Nothing (no pairs) without a region index.

    The score is a region cosine, not the space's: it says what to verify, not what the
    pair is."""
    sp = index.space(space)
    stored = _load(index, sp, cached=True)
    if stored is None or not stored.whole or not stored.index.ntotal:
        return []
    current = _space_works(index, sp)
    ids = [a for a in sorted(stored.whole) if a in current]
    found: dict[tuple[int, int], float] = {}
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
                found[key] = max(found.get(key, -1.0), float(score))
                if len(best) == per_work:
                    break
    return sorted(((a, b, s) for (a, b), s in found.items()), key=lambda p: (-p[2], p[0], p[1]))


def region_summary(index: ArtIndex, sp: Space) -> dict[str, Any] | None:
    """What `artsearch info` says about a space's region index."""
    stored = _load(index, sp)
    if stored is None:
        return None
    size = _path(index, sp).stat().st_size
    return {"works": len(stored.works), "regions": int(stored.index.ntotal),
            "structure": stored.meta.get("structure"), "layer": stored.meta.get("layer"),
            "bytes": size, "built": stored.meta.get("built")}

