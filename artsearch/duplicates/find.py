"""Typed near-duplicates: an embedding shortlist, then local features and RANSAC say how two
images are related — the same pixels, re-encoded, mirrored, a crop or a detail, or only alike.

The embedding proposes pairs; geometry decides their type. SIFT keypoints are matched both
ways round (the second image as it is and mirrored), a similarity transform is fitted with
RANSAC, and the footprint of each image inside the other gives the type: both cover each
other (re-encoded, or mirrored), one lies wholly inside a larger one (crop, or detail when
a small part), or too few matches agree (related, when the embedding still finds them very
close). Agreement only in a frame or painted border is no pair; agreement on a small share
of the keypoints both have is two versions of one composition (related). The thresholds
are fitted on derivatives synthesised from the collection itself (`duplicates.fit`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artsearch.errors import BadImageError, MetadataError

if TYPE_CHECKING:
    from PIL import Image

    from artsearch.index import ArtIndex

__all__ = ["TYPES", "Features", "Geometry", "Pair", "Thresholds", "classify", "features",
           "find_duplicates", "geometry", "load_thresholds", "save_thresholds", "shortlist"]

TYPES = ("exact", "re-encoded", "mirrored", "crop", "detail", "related")
SIDE = 512  # images are compared at most this many pixels on their long side
THREADS = min(8, os.cpu_count() or 1)
THRESHOLDS_FILE = "duplicates.json"
GEOMETRY_VERSION = 6  # bumped when features() or the fit change: pairs are verified again
REGION_CANDIDATES = 10  # works whose regions best match a work's whole, each verified
SAME_COVER = 0.95  # a part covering this much of the other is the same picture


@dataclass(frozen=True)
class Thresholds:
    """What makes a pair, and of which type (fitted by `calibrate`)."""

    shortlist: float = 0.70  # cosine at which any of a work's k neighbours is examined
    near: int = 3            # ... and its `near` nearest are examined from this cosine:
    floor: float = 0.50      # a crop or halftone is often its original's nearest, not close
    related: float = 0.92    # cosine above which an unverified pair is still "related"
    min_inliers: int = 8     # RANSAC inliers for the geometry to count as evidence
    full: float = 0.80       # share of an image the other must cover to be "the whole"
    detail: float = 0.15     # a part smaller than this share of the whole is a "detail"
    small: int = 500         # works up to which each work's k nearest are all verified


@dataclass
class Features:
    """One image's keypoints, prepared once however many pairs it is in."""

    size: tuple[int, int]      # (width, height) as compared
    scale: float               # compared pixels per original pixel
    pixels: str                # hash of the decoded pixels: equal means an exact copy
    points: np.ndarray         # (n, 2) keypoint positions
    descriptors: np.ndarray | None
    mirrored_points: np.ndarray | None = None
    mirrored_descriptors: np.ndarray | None = None


@dataclass
class Geometry:
    """How two images map onto each other, as far as matched keypoints show it."""

    inliers: int = 0
    mirrored: bool = False
    cover_a: float = 0.0   # share of image a that b's footprint covers
    cover_b: float = 0.0   # share of image b that a's footprint covers
    scale: float = 1.0     # b pixels per a pixel (originals' sizes)
    rotation: float = 0.0  # degrees
    box: list[int] | None = None  # the smaller part's footprint in the whole, x0 y0 x1 y1
    whole: list[int] | None = None  # the whole's width and height (original pixels)
    same_pixels: bool = False
    # Where the agreeing points lie in the part (the picture inside the other): the share of
    # them off its outer band, and how many cells of a 3x3 grid over its interior they
    # reach. Points only in a frame or painted border are no evidence of one picture.
    interior: float = 1.0
    spread: int = 9
    # Agreeing points per keypoint either picture has in the shared part (the fewer of the
    # two counts): most of them for the same pixels however re-encoded, cropped or enlarged;
    # a few for another painting of the same composition, whose strokes differ.
    density: float = 1.0


@dataclass
class Pair:
    a: int
    b: int
    path_a: str
    path_b: str
    cosine: float
    type: str | None
    geometry: Geometry = field(default_factory=Geometry)

    def as_dict(self) -> dict[str, Any]:
        g = self.geometry
        part = None if self.type not in ("crop", "detail") else (
            "a" if g.cover_a >= g.cover_b else "b")
        return {"a": self.a, "b": self.b, "path_a": self.path_a, "path_b": self.path_b,
                "type": self.type, "cosine": round(self.cosine, 4), "inliers": g.inliers,
                "mirrored": g.mirrored, "cover_a": round(g.cover_a, 3),
                "cover_b": round(g.cover_b, 3), "scale": round(g.scale, 3),
                "rotation": round(g.rotation, 1), "part": part,
                "box": g.box if part else None, "interior": round(g.interior, 3),
                "spread": g.spread, "density": g.density}


# -- features and geometry -----------------------------------------------------------------------

# AKAZE is not among them: OpenCV 5 moved it out of the main modules that opencv-python ships.
DETECTORS = ("rootsift", "orb")
# RootSIFT, the 1,500 strongest keypoints a picture (benchmarks/README.md: ORB found 1 detail
# in 10 where RootSIFT found 9; 500, or 500 then 1,500, confirm 20 and 22 of 30, not 24).
DETECTOR = "rootsift"


def _detector(name: str) -> Any:
    """A detector by name, with its keypoint budget after a colon (rootsift:800)."""
    import cv2

    kind, _, budget = name.partition(":")
    points = int(budget) if budget.isdigit() else 1500
    # OpenCV's Python stubs do not list the feature factories.
    if kind == "rootsift":
        return cv2.SIFT_create(nfeatures=points)  # type: ignore[attr-defined]
    if kind == "orb":
        return cv2.ORB_create(nfeatures=points)  # type: ignore[attr-defined]
    raise ValueError(f"no local feature detector {name!r}; one of {', '.join(DETECTORS)}")


def features(img: Image.Image, detector: str | None = None) -> Features:
    """Keypoints of an RGB image (and of its mirror image), at most SIDE px long: RootSIFT
    unless another of DETECTORS is named."""
    import cv2

    rgb = np.asarray(img.convert("RGB"))
    pixels = hashlib.sha256(rgb.tobytes() + str(rgb.shape).encode()).hexdigest()
    scale = min(1.0, SIDE / max(rgb.shape[:2]))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    found = _detector(detector or DETECTOR)
    points, desc = _detect(found, grey)
    if desc is not None and desc.dtype != np.uint8:
        # SIFT: the mirror image's keypoints are these, and their descriptors these with
        # their bins reordered (no second detection: half the time).
        return Features((grey.shape[1], grey.shape[0]), scale, pixels, points, desc,
                        points.copy(), np.ascontiguousarray(desc[:, _MIRROR_SIFT]))
    m_points, m_desc = _detect(found, np.ascontiguousarray(grey[:, ::-1]))
    if len(m_points):  # back into the unmirrored image's coordinates
        m_points[:, 0] = grey.shape[1] - 1 - m_points[:, 0]
    return Features((grey.shape[1], grey.shape[0]), scale, pixels, points, desc,
                    m_points, m_desc)


def _mirror_sift() -> np.ndarray:
    """The order of a SIFT descriptor's 128 bins (4 x 4 cells of 8 orientations, rows across
    the keypoint's direction) that gives the descriptor of the same point in the mirror
    image: there its direction is 180 - angle, so the rows run the other way and every
    orientation o becomes -o. (Against SIFT run on the mirror image: median difference 0.12
    of the descriptor's length, the two sampling the pixels half a pixel apart.)"""
    order = np.empty(128, np.int64)
    for row in range(4):
        for col in range(4):
            for o in range(8):
                order[((3 - row) * 4 + col) * 8 + (8 - o) % 8] = (row * 4 + col) * 8 + o
    return order


_MIRROR_SIFT = _mirror_sift()


def _detect(sift: Any, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    keypoints, desc = sift.detectAndCompute(grey, None)
    order = sorted(range(len(keypoints)), key=lambda i: -keypoints[i].response)
    keypoints = [keypoints[i] for i in order]  # strongest first: a prefix is the top n
    if desc is not None:
        desc = desc[order]
    points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
    if desc is not None and desc.dtype != np.uint8:
        # RootSIFT: Hellinger distance matches texture better than L2
        desc = np.sqrt(desc / np.maximum(desc.sum(axis=1, keepdims=True), 1e-7))
    return points, desc


def _matches(da: np.ndarray | None, db: np.ndarray | None) -> list[tuple[int, int]]:
    """Mutual nearest neighbours that pass Lowe's ratio test (0.8)."""
    if da is None or db is None or len(da) < 2 or len(db) < 2:
        return []
    if da.dtype == np.uint8:  # ORB and AKAZE: bit strings, compared by Hamming distance
        return _binary_matches(da, db)
    # RootSIFT descriptors are unit vectors, so one matrix of dot products gives every
    # distance (|a - b|^2 = 2 - 2 a.b) both ways round: the same matches as OpenCV's brute
    # force matcher asked twice, in half its time.
    sim = np.ascontiguousarray(da, np.float32) @ np.ascontiguousarray(db, np.float32).T
    two = np.argpartition(-sim, 1, axis=1)[:, :2]
    best = np.take_along_axis(sim, two, axis=1)
    swap = best[:, 1] > best[:, 0]
    two[swap] = two[swap][:, ::-1]
    best[swap] = best[swap][:, ::-1]
    dist = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * best))
    back = np.argmax(sim, axis=0)  # each b's nearest a
    rows = np.arange(len(da))
    keep = (dist[:, 0] < 0.8 * dist[:, 1]) & (back[two[:, 0]] == rows)
    return [(int(i), int(two[i, 0])) for i in np.flatnonzero(keep)]


def _binary_matches(da: np.ndarray, db: np.ndarray) -> list[tuple[int, int]]:
    import cv2

    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    knn = matcher.knnMatch(da, db, k=2)
    back = {m.queryIdx: m.trainIdx for m in matcher.match(db, da)}
    return [(m.queryIdx, m.trainIdx) for m, n in (p for p in knn if len(p) == 2)
            if m.distance < 0.8 * n.distance and back.get(m.trainIdx) == m.queryIdx]


def geometry(fa: Features, fb: Features) -> Geometry:
    """Fit a similarity transform a -> b (and a -> mirrored b) with RANSAC; keep the better."""
    best = Geometry(same_pixels=fa.pixels == fb.pixels)
    if best.same_pixels:
        return replace(best, inliers=len(fa.points), cover_a=1.0, cover_b=1.0)
    for mirrored in (False, True):
        pb, db = (fb.mirrored_points, fb.mirrored_descriptors) if mirrored else \
            (fb.points, fb.descriptors)
        if pb is None:
            continue
        found = _fit(fa, fb, fa.points, pb, _matches(fa.descriptors, db), mirrored)
        if found is not None and found.inliers > best.inliers:
            best = found
    return best


def _fit(fa: Features, fb: Features, pa: np.ndarray, pb: np.ndarray,
         matches: list[tuple[int, int]], mirrored: bool) -> Geometry | None:
    import cv2

    if len(matches) < 4:
        return None
    src = pa[[i for i, _ in matches]]
    dst = pb[[j for _, j in matches]]
    if mirrored:  # fit in the mirrored frame, where the transform is a rotation again
        dst = dst.copy()
        dst[:, 0] = fb.size[0] - 1 - dst[:, 0]
    tol = max(3.0, 0.006 * float(np.hypot(*fb.size)))
    matrix, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                               ransacReprojThreshold=tol, maxIters=4000,
                                               confidence=0.995)
    if matrix is None or mask is None:
        return None
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    if not 1e-3 < scale < 1e3:
        return None
    corners_a = _corners(fa.size)
    corners_b = _corners(fb.size)
    a_in_b = corners_a @ matrix[:, :2].T + matrix[:, 2]
    inverse = cv2.invertAffineTransform(matrix)
    b_in_a = corners_b @ inverse[:, :2].T + inverse[:, 2]
    cover_b = _overlap(a_in_b, fb.size)
    cover_a = _overlap(b_in_a, fa.size)
    # The part's footprint in the whole, in the whole's original pixels.
    if cover_a >= cover_b:  # a lies inside b
        poly, whole = a_in_b.copy(), fb
        if mirrored:
            poly[:, 0] = fb.size[0] - 1 - poly[:, 0]
    else:  # b's corners mirrored or not, their box in a is the same rectangle
        poly, whole = b_in_a.copy(), fa
    box = _box(poly, whole)
    whole_size = _size(whole)
    rotation = float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))
    agreeing = mask.ravel().astype(bool)
    part_points, part_size = (src, fa.size) if cover_a >= cover_b else (dst, fb.size)
    interior, spread = _interior(part_points[agreeing], part_size)
    pb_fit = pb.copy()
    if mirrored:
        pb_fit[:, 0] = fb.size[0] - 1 - pb_fit[:, 0]
    shared = min(_inside(pa @ matrix[:, :2].T + matrix[:, 2], fb.size),
                 _inside(pb_fit @ inverse[:, :2].T + inverse[:, 2], fa.size))
    return Geometry(int(mask.sum()), mirrored, cover_a, cover_b,
                    scale * fa.scale / fb.scale, rotation, box, whole_size,
                    interior=interior, spread=spread,
                    density=round(float(mask.sum()) / max(1, shared), 4))


def _inside(points: np.ndarray, size: tuple[int, int]) -> int:
    """How many `points` lie inside the rectangle `size`."""
    return int(((points >= 0) & (points < np.array(size))).all(axis=1).sum())


FRAME_BAND = 0.12  # the outer share of each side where a frame or painted border lies
MIN_INTERIOR = 0.35  # share of agreeing points that must lie inside the band
MIN_SPREAD = 3  # cells of a 3x3 grid over the interior they must reach
# Agreeing points per shared keypoint below which two pictures are two versions of one
# composition, not one picture. Measured on dev paintings (benchmarks/bench_frames.py and a
# probe of 40 more): derivatives kept >= 0.12 (halftones the fewest; JPEG re-encodings 0.53
# and up), while the same composition repainted with its motifs moved a few pixels, as a
# copyist's are, stayed under 0.10 in 25 of 26 and 34 of 36.
MIN_DENSITY = 0.10


def _interior(points: np.ndarray, size: tuple[int, int]) -> tuple[float, int]:
    """(share of `points` off the outer FRAME_BAND, cells of a 3x3 grid over the interior
    that hold at least one)."""
    if not len(points):
        return 0.0, 0
    w, h = size
    x = (points[:, 0] / max(w, 1) - FRAME_BAND) / (1 - 2 * FRAME_BAND)
    y = (points[:, 1] / max(h, 1) - FRAME_BAND) / (1 - 2 * FRAME_BAND)
    inside = (x >= 0) & (x < 1) & (y >= 0) & (y < 1)
    cells = {(int(a * 3), int(b * 3)) for a, b in zip(x[inside], y[inside], strict=True)}
    return float(inside.mean()), len(cells)


def _corners(size: tuple[int, int]) -> np.ndarray:
    w, h = size
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)


def _overlap(poly: np.ndarray, size: tuple[int, int]) -> float:
    """Share of the rectangle `size` that the convex polygon covers."""
    import cv2

    rect = _corners(size)
    area, _ = cv2.intersectConvexConvex(poly.astype(np.float32), rect)
    return float(min(1.0, max(0.0, area) / max(1.0, (size[0] - 1) * (size[1] - 1))))


def _size(f: Features) -> list[int]:
    return [round(f.size[0] / f.scale), round(f.size[1] / f.scale)]


def _box(poly: np.ndarray, whole: Features) -> list[int]:
    w, h = whole.size
    x0, y0 = np.clip(poly.min(axis=0), 0, [w, h])
    x1, y1 = np.clip(poly.max(axis=0), 0, [w, h])
    return [round(float(v) / whole.scale) for v in (x0, y0, x1, y1)]


def classify(g: Geometry, cosine: float, t: Thresholds) -> str | None:
    """The pair's type from its geometry (and, failing that, its cosine); None: no pair."""
    if g.same_pixels:
        return "exact"
    if g.inliers >= t.min_inliers and (g.interior < MIN_INTERIOR or g.spread < MIN_SPREAD):
        # Agreement only in a frame or a border: two pictures that share one, not a pair.
        return "related" if cosine >= t.related else None
    if g.inliers >= t.min_inliers and g.density < MIN_DENSITY:
        return "related"  # the same composition, painted again: another version
    if g.inliers >= t.min_inliers:
        whole, part = max(g.cover_a, g.cover_b), min(g.cover_a, g.cover_b)
        # One picture when each covers (nearly) all of the other (re-encoded, trimmed,
        # turned); one wholly inside a larger one, however large, is a crop of it.
        if part >= t.full and (part >= SAME_COVER or whole - part < 0.08):
            return "mirrored" if g.mirrored else "re-encoded"
        if whole >= t.full:
            return "crop" if part >= t.detail else "detail"
        return "related"  # each shows part of the other: two crops, another state
    return "related" if cosine >= t.related else None


# -- thresholds: stored with the index, fitted on synthesised pairs --------------------------------

def load_thresholds(index: ArtIndex) -> tuple[Thresholds, dict[str, Any] | None]:
    """The index's fitted thresholds (and their calibration record), else the defaults."""
    path = index.path / THRESHOLDS_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return Thresholds(**record["thresholds"]), record
    except FileNotFoundError:
        return Thresholds(), None
    except (ValueError, KeyError, TypeError) as e:
        raise MetadataError(f"{path}: not a thresholds file artsearch wrote ({e}); delete it "
                            "or run `artsearch duplicates --calibrate` to refit") from e


def save_thresholds(index: ArtIndex, record: dict[str, Any]) -> Path:
    path = index.path / THRESHOLDS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


# -- finding pairs in an index ------------------------------------------------------------------

Progress = Callable[[str], None]


def shortlist(index: ArtIndex, space: str, threshold: float, k: int, *, near: int = 0,
              floor: float = float("inf")) -> list[tuple[int, int, float]]:
    """Pairs of artwork ids (a < b) with their cosine: each work with those of its k nearest
    neighbours at `threshold` or above, and those of its `near` nearest at `floor` or above —
    one search of the space's own searcher (approximate above its size rule): no n x n
    matrix, so it scales with the index."""
    from artsearch.cluster import space_matrix

    sp = index.space(space)
    ids, vectors = space_matrix(index, space)
    searcher, _ = index.searcher(sp)
    faiss_ids, art_ids = index.id_maps(sp)
    by_faiss = dict(zip(faiss_ids.tolist(), art_ids.tolist(), strict=True))
    found: dict[tuple[int, int], float] = {}
    for start in range(0, len(ids), 1024):
        scores, neigh = searcher.search(vectors[start:start + 1024], max(k, near) + 1)
        for row, a in enumerate(ids[start:start + 1024]):
            for j, (s, f) in enumerate(zip(scores[row], neigh[row], strict=True)):
                b = by_faiss.get(int(f))
                # position j counts the work itself, usually first: k + 1 positions hold k
                if b is None or b == a or not ((j <= k and s >= threshold)
                                               or (j <= near and s >= floor)):
                    continue
                key = (min(a, b), max(a, b))
                found[key] = max(found.get(key, -1.0), float(s))
    return sorted(((a, b, s) for (a, b), s in found.items()), key=lambda p: (-p[2], p[0], p[1]))


def find_duplicates(index: ArtIndex, space: str = "content", *, k: int = 10,
                    thresholds: Thresholds | None = None, keep_unrelated: bool = False,
                    regions: bool = True, progress: Progress | None = None) -> list[Pair]:
    """Every pair of works that are the same image or a derivative, typed by geometry.

    Identical files are paired from their content hashes whatever the space says; other
    candidates come from `shortlist`, and where the space has a region index (and
    `regions`), from `artsearch.regions.region_pairs`: a detail's whole-picture cosine to
    its source is often far below any shortlist's, its best region's is not. With
    `keep_unrelated`, examined pairs that turned out to be nothing are returned too (type
    None), for relabelling.
    """
    from artsearch.index.catalogue import artworks

    say = progress or (lambda _m: None)
    t = thresholds or load_thresholds(index)[0]
    arts = {a.id: a for a in artworks(index)}
    small = len(arts) <= t.small  # a detail's source is often far in the space: verify all k
    candidates = {(a, b): s for a, b, s in shortlist(
        index, space, -1.0 if small else t.shortlist, k, near=t.near, floor=t.floor)}
    if regions:
        extra = _region_candidates(index, space, candidates)
        if extra:
            say(f"{extra:,} more candidate pairs from the region index (details and crops)")
    by_hash: dict[str, list[int]] = {}
    for a in arts.values():
        by_hash.setdefault(a.sha256, []).append(a.id)
    for same in by_hash.values():
        for a, b in itertools.combinations(sorted(same), 2):
            candidates.setdefault((a, b), 1.0)
    todo = sorted((a, b, c) for (a, b), c in candidates.items() if a in arts and b in arts)
    known = _GeometryCache(index)
    needed = sorted({x for a, b, _ in todo if arts[a].sha256 != arts[b].sha256
                     and known.get(arts[a].sha256, arts[b].sha256) is None for x in (a, b)})
    say(f"{len(todo):,} candidate pairs among {len(arts):,} works; local features of "
        f"{len(needed):,} works (pairs verified by an earlier run are not verified again)")
    cache = _FeatureCache(index, arts)
    cache.fill(needed, say)

    def verify(pair: tuple[int, int, float]) -> Pair:
        a, b, cosine = pair
        if arts[a].sha256 == arts[b].sha256:
            g = Geometry(same_pixels=True, cover_a=1.0, cover_b=1.0)
        elif (g_known := known.get(arts[a].sha256, arts[b].sha256)) is not None:
            g = g_known
        else:
            fa, fb = cache.get(a), cache.get(b)
            if fa is not None and fb is not None:
                g = geometry(fa, fb)
                known.put(arts[a].sha256, arts[b].sha256, g)
            else:  # unreadable now: not remembered, so a later run tries again
                g = Geometry()
        return Pair(a, b, arts[a].path, arts[b].path, cosine, classify(g, cosine, t), g)

    pairs = []
    with ThreadPoolExecutor(max_workers=THREADS) as pool:  # OpenCV releases the GIL
        for n, pair in enumerate(pool.map(verify, todo), 1):
            if pair.type is not None or keep_unrelated:
                pairs.append(pair)
            if n % 1000 == 0:
                say(f"verified {n:,} of {len(todo):,} pairs")
    known.save()
    order = {name: i for i, name in enumerate(TYPES)}
    pairs.sort(key=lambda p: (order.get(p.type or "", 99), -p.cosine, p.a, p.b))
    return pairs


def _region_candidates(index: ArtIndex, space: str,
                       candidates: dict[tuple[int, int], float]) -> int:
    """Add the region index's pairs to `candidates`, each with its cosine in the space (the
    pair's reported similarity); how many were new."""
    from artsearch.regions import region_pairs

    keys = {(min(p, w), max(p, w))
            for p, w, _ in region_pairs(index, space, per_work=REGION_CANDIDATES)}
    pairs = sorted(key for key in keys if key not in candidates)
    if not pairs:
        return 0
    sp = index.space(space)
    faiss_ids, art_ids = index.id_maps(sp)
    row = dict(zip(art_ids.tolist(), faiss_ids.tolist(), strict=True))
    vectors = index.vectors(sp)
    added = 0
    for a, b in pairs:
        if a in row and b in row:
            va, vb = vectors.vectors(np.array([row[a], row[b]], np.int64))
            candidates[(a, b)] = float(va @ vb)
            added += 1
    return added


class _GeometryCache:
    """Each verified pair's geometry, kept in INDEX/duplicates-geometry.json by the two
    files' content hashes (in the pair's order): a second run verifies only new pairs, and
    a changed file, having a new hash, is verified again. The geometry does not depend on
    the thresholds, so a refit or another threshold reuses it; a change to the features or
    the fit (GEOMETRY_VERSION) starts afresh."""

    NAME = "duplicates-geometry.json"

    def __init__(self, index: ArtIndex) -> None:
        self.path = index.path / self.NAME
        self.pairs: dict[str, dict[str, Any]] = {}
        self.added = 0
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") == GEOMETRY_VERSION and isinstance(data.get("pairs"), dict):
                self.pairs = data["pairs"]
        except (OSError, ValueError):  # none yet, or damaged: verify again
            pass

    def get(self, sha_a: str, sha_b: str) -> Geometry | None:
        found = self.pairs.get(f"{sha_a}:{sha_b}")
        if found is None:
            return None
        try:
            return Geometry(**found)
        except TypeError:  # written by another layout of Geometry
            return None

    def put(self, sha_a: str, sha_b: str, g: Geometry) -> None:
        self.pairs[f"{sha_a}:{sha_b}"] = asdict(g)  # one dict store: safe across threads
        self.added += 1

    def save(self) -> None:
        if not self.added:
            return
        tmp = self.path.with_name(f".{self.NAME}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({"version": GEOMETRY_VERSION, "pairs": self.pairs},
                                      default=lambda v: v.item()),  # numpy scalars
                           encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:  # a read-only index: the pairs are verified again next time
            tmp.unlink(missing_ok=True)


class _FeatureCache:
    """Features per artwork, computed on first use; unreadable files are remembered once."""

    def __init__(self, index: ArtIndex, arts: dict[int, Any]) -> None:
        self.root, self.arts = index.root, arts
        self.done: dict[int, Features | None] = {}
        self.unreadable: list[tuple[str, str]] = []

    def get(self, artwork_id: int) -> Features | None:
        if artwork_id not in self.done:
            self.done[artwork_id] = self._load(artwork_id)
        return self.done[artwork_id]

    def fill(self, ids: Sequence[int], say: Progress) -> None:
        """Compute the features of many works at once, in threads."""
        todo = [i for i in ids if i not in self.done]
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            for n, (i, f) in enumerate(zip(todo, pool.map(self._load, todo), strict=True), 1):
                self.done[i] = f
                if n % 500 == 0:
                    say(f"local features of {n:,} of {len(todo):,} works")

    def _load(self, artwork_id: int) -> Features | None:
        from artsearch.images import decode_image, read_file
        from artsearch.paths import work_file

        path = self.arts[artwork_id].path
        if self.root is None:
            return None
        try:
            img, _ = decode_image(read_file(work_file(self.root, path)))
        except (BadImageError, OSError) as e:
            self.unreadable.append((path, str(e)))
            return None
        return features(img)
