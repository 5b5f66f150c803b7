"""Fitting the thresholds of `artsearch duplicates` on the collection itself: derivatives
synthesised from its works (the types they should get are known), its works' nearest other
works as hard negatives, and pairs a curator has relabelled; scored per type.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artsearch.duplicates.find import (
    TYPES,
    Geometry,
    Progress,
    Thresholds,
    _FeatureCache,
    classify,
    features,
    geometry,
    load_thresholds,
    save_thresholds,
    shortlist,
)
from artsearch.errors import BadImageError, MetadataError
from artsearch.paths import work_file

if TYPE_CHECKING:
    from PIL import Image

    from artsearch.index import ArtIndex

__all__ = ["DERIVATIONS", "Example", "another_version", "calibrate", "calibrate_index",
           "derive", "read_labels", "scores", "synthesise"]

# -- synthesised derivatives ----------------------------------------------------------------------

DERIVATIONS = ("exact", "jpeg", "resize", "colour", "rotate", "halftone", "mirrored",
               "crop", "detail")
_TRUE_TYPE = {"exact": "exact", "jpeg": "re-encoded", "resize": "re-encoded",
              "colour": "re-encoded", "rotate": "re-encoded", "halftone": "re-encoded",
              "mirrored": "mirrored", "crop": "crop", "detail": "detail"}


def derive(img: Image.Image, how: str, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """A derivative of `img` made `how` (one of DERIVATIONS), and the type it should get.

    Crops keep 20-80 % of the area, details 4-12 % enlarged back to the original size;
    everything but `exact` is JPEG-compressed at quality 30-90 on the way out.
    """
    from PIL import Image, ImageEnhance, ImageFilter, ImageOps

    w, h = img.size
    out = img.convert("RGB")
    if how == "exact":
        return out.copy(), "exact"
    if how == "resize":
        f = rng.uniform(0.4, 0.9)
        out = out.resize((max(8, round(w * f)), max(8, round(h * f))), Image.Resampling.BICUBIC)
    elif how == "colour":
        out = ImageEnhance.Color(out).enhance(rng.uniform(0.5, 1.5))
        out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.8, 1.2))
        out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.8, 1.2))
    elif how == "rotate":
        out = out.rotate(float(rng.uniform(-5, 5)), Image.Resampling.BICUBIC, fillcolor="white")
    elif how == "halftone":
        out = _halftone(out)
    elif how == "mirrored":
        out = ImageOps.mirror(out)
    elif how in ("crop", "detail"):
        area = rng.uniform(0.2, 0.8) if how == "crop" else rng.uniform(0.04, 0.12)
        aspect = rng.uniform(0.75, 1.33)
        cw = int(np.clip(np.sqrt(area * w * h * aspect), 16, w))
        ch = int(np.clip(area * w * h / cw, 16, h))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        out = out.crop((x0, y0, x0 + cw, y0 + ch))
        if how == "detail":
            f = min(w / cw, h / ch)
            out = out.resize((round(cw * f), round(ch * f)), Image.Resampling.BICUBIC)
    elif how != "jpeg":
        raise ValueError(f"unknown derivation {how!r}; one of {', '.join(DERIVATIONS)}")
    if how == "halftone":
        out = out.filter(ImageFilter.GaussianBlur(0.8))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=int(rng.integers(30, 91)))
    buf.seek(0)
    return Image.open(buf).convert("RGB"), _TRUE_TYPE[how]


def _halftone(img: Image.Image, cell: int = 4) -> Image.Image:
    """An ordered-dither screen per channel, as a printed reproduction scans."""
    from PIL import Image

    order = np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]],
                     np.float32)
    bayer = (order + 0.5) / 16 * 255
    a = np.asarray(img, np.float32)
    h, w = a.shape[:2]
    screen = np.tile(bayer, (h // cell + 1, w // cell + 1))[:h, :w]
    return Image.fromarray(((a > screen[..., None]) * 255).astype(np.uint8))


def another_version(img: Image.Image, manner: Image.Image, rng: np.random.Generator,
                    shift: float = 6.0) -> Image.Image:
    """`img`'s composition painted again: its motifs moved by a smooth random warp of about
    `shift` pixels (a copyist's hand), repainted in the manner of `manner` by the fast style
    network (artsearch.stylize), JPEG q75. Two versions of one composition should be
    `related`, never a crop or a re-encoding."""
    import cv2
    from PIL import Image

    from artsearch.stylize import stylize_fast

    a = np.asarray(img.convert("RGB"))
    h, w = a.shape[:2]
    dx, dy = (cv2.resize(rng.normal(0, shift, (4, 4)).astype(np.float32), (w, h),
                         interpolation=cv2.INTER_CUBIC) for _ in range(2))
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    moved = Image.fromarray(cv2.remap(a, xs + dx, ys + dy, cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REFLECT))
    painted = stylize_fast(moved, manner, size=max(w, h)).image
    buf = io.BytesIO()
    painted.save(buf, "JPEG", quality=75)
    buf.seek(0)
    return Image.open(buf).convert("RGB")



# -- calibration --------------------------------------------------------------------------------

@dataclass
class Example:
    """One labelled pair for calibration: its geometry, cosine and the true type."""

    geometry: Geometry
    cosine: float
    truth: str | None  # None: not a duplicate (a hard negative)
    how: str           # how it was made: a DERIVATION, "negative" or "label"


def synthesise(images: Sequence[Image.Image], negatives: Sequence[tuple[int, int, float]],
               seed: int = 0, cosine: float = 1.0) -> list[Example]:
    """Examples from derivatives of `images` (one derivation each, in turn) and from
    `negatives` (index pairs into `images` of different works, with their cosines)."""
    rng = np.random.default_rng(seed)
    feats = [features(img) for img in images]
    out = []
    for i, img in enumerate(images):
        how = DERIVATIONS[i % len(DERIVATIONS)]
        copy, truth = derive(img, how, rng)
        out.append(Example(geometry(feats[i], features(copy)), cosine, truth, how))
    for i, j, cos in negatives:
        out.append(Example(geometry(feats[i], feats[j]), cos, None, "negative"))
    return out


def scores(examples: Iterable[Example], t: Thresholds) -> dict[str, dict[str, Any]]:
    """Precision and recall per type (and 'none' for the negatives) under thresholds t."""
    truth, pred = [], []
    for e in examples:
        truth.append(e.truth or "none")
        pred.append(classify(e.geometry, e.cosine, t) or "none")
    table = {}
    for kind in (*TYPES, "none"):
        tp = sum(1 for a, b in zip(truth, pred, strict=True) if a == b == kind)
        n_pred = sum(1 for b in pred if b == kind)
        n_true = sum(1 for a in truth if a == kind)
        if n_true or n_pred:
            table[kind] = {"precision": tp / n_pred if n_pred else None,
                           "recall": tp / n_true if n_true else None,
                           "pairs": n_true, "predicted": n_pred}
    return table


def _objective(table: dict[str, dict[str, Any]]) -> float:
    """Mean F1 over the types the examples hold (a wrong "related" costs their recall)."""
    f1 = []
    for row in (r for r in table.values() if r["pairs"]):
        p, r = row["precision"] or 0.0, row["recall"] or 0.0
        f1.append(0.0 if p + r == 0 else 2 * p * r / (p + r))
    return float(np.mean(f1)) if f1 else 0.0


def calibrate(examples: Sequence[Example], base: Thresholds | None = None) -> Thresholds:
    """The geometric thresholds that best type `examples` (grid search, mean F1 over types).

    The shortlist and related cosines are kept from `base`: they bound what is examined,
    which these examples (made to be examined) cannot tell.
    """
    base = base or Thresholds()
    best, best_score = base, _objective(scores(examples, base))
    # A crop keeps at most 80 % of the area, so "the whole" starts above that; ties keep base.
    for min_inliers, full, detail in itertools.product(
            (8, 10, 12, 15, 20, 25, 30), (0.8, 0.85, 0.9, 0.95), (0.1, 0.15, 0.2, 0.25)):
        t = replace(base, min_inliers=min_inliers, full=full, detail=detail)
        score = _objective(scores(examples, t))
        if score > best_score + 1e-9:
            best, best_score = t, score
    return best


def split_halves(examples: Sequence[Example], seed: int = 0
                 ) -> tuple[list[Example], list[Example]]:
    """(fit, held out): each kind of example (every derivation, the hard negatives, the
    relabelled pairs) dealt alternately into the two halves after a seeded shuffle, so both
    hold every type and its negatives in the same proportions."""
    rng = np.random.default_rng(seed)
    by_kind: dict[str, list[Example]] = {}
    for e in examples:
        by_kind.setdefault(e.how, []).append(e)
    fit: list[Example] = []
    held: list[Example] = []
    for kind in sorted(by_kind):
        group = [by_kind[kind][i] for i in rng.permutation(len(by_kind[kind]))]
        fit += group[0::2]
        held += group[1::2]
    return fit, held


def thresholds_record(t: Thresholds, fit: Sequence[Example], held_out: Sequence[Example],
                      **facts: Any) -> dict[str, Any]:
    return {"thresholds": asdict(t), "fitted_on": len(fit), "judged_on": len(held_out),
            "held_out": scores(held_out, t), **facts}


def read_labels(path: Path) -> list[tuple[str, str, str | None]]:
    """Relabelled pairs from a CSV with path_a, path_b and label columns (the file `--csv`
    writes, its `type` column copied into `label` and corrected); label `none` = no pair."""
    import csv

    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise MetadataError(f"{path}: cannot read it as CSV ({e})") from e
    out = []
    for n, row in enumerate(rows, 2):
        label = (row.get("label") or "").strip().lower()
        if not label:
            continue
        if label not in (*TYPES, "none") or not row.get("path_a") or not row.get("path_b"):
            raise MetadataError(
                f"{path}, line {n}: need path_a, path_b and a label that is one of "
                f"{', '.join(TYPES)} or none; got {label!r}")
        out.append((row["path_a"], row["path_b"], None if label == "none" else label))
    if not out:
        raise MetadataError(f"{path}: no row has a label; copy `type` into a `label` column "
                            "and correct the ones that are wrong")
    return out


def _same_pixels(index: ArtIndex, arts: dict[int, Any], a: int, b: int, decoded: Any) -> bool:
    """Whether work b's file decodes to the same pixels as work a's (`decoded`): a PNG
    re-save of a JPEG's pixels is the same picture, not a hard negative."""
    from artsearch.images import decode_image, read_file

    try:
        other, _ = decode_image(read_file(work_file(index.root, arts[b].path)))
    except (BadImageError, OSError):
        return False
    return bool(other.size == decoded.size and other.tobytes() == decoded.tobytes())


def calibrate_index(index: ArtIndex, space: str = "content", *, works: int = 200,
                    labels: Sequence[tuple[str, str, str | None]] = (), seed: int = 0,
                    progress: Progress | None = None) -> dict[str, Any]:
    """Fit the index's thresholds on derivatives of its own works, their nearest different
    works as hard negatives, and any relabelled pairs; judge them on a held-out half; store
    and return the record."""
    import datetime as dt

    from artsearch.index.catalogue import artworks

    say = progress or (lambda _m: None)
    arts = {a.id: a for a in artworks(index)}
    cache = _FeatureCache(index, arts)
    rng = np.random.default_rng(seed)
    ids = sorted(arts)
    if len(ids) < works:
        # Fewer works than asked would fit and judge on a handful of pairs, and print
        # precision and recall of 1.00 that mean nothing.
        raise MetadataError(f"--calibrate {works}: {index.path} holds {len(ids)} works; "
                            f"give --calibrate {len(ids)} or less (and at least 10)"
                            if len(ids) >= 10 else
                            f"--calibrate needs at least 10 works; {index.path} holds "
                            f"{len(ids)}")
    chosen = sorted(rng.choice(ids, min(works, len(ids)), replace=False).tolist())
    nearest: dict[int, tuple[int, float]] = {}
    for a, b, s in shortlist(index, space, -1.0, 5):
        if arts[a].sha256 != arts[b].sha256:
            for x, y in ((a, b), (b, a)):
                if x not in nearest or s > nearest[x][1]:
                    nearest[x] = (y, s)
    by_path = {a.path: a.id for a in arts.values()}
    # Pairs a curator labelled as duplicates are never used as hard negatives.
    known = {frozenset((by_path[a], by_path[b])) for a, b, label in labels
             if label is not None and a in by_path and b in by_path}
    say(f"synthesising {len(chosen)} derivatives and {len(chosen)} hard negatives")
    from artsearch.images import decode_image, read_file

    examples: list[Example] = []
    for n, art_id in enumerate(chosen):
        fa = cache.get(art_id)
        if fa is None or index.root is None:
            continue
        try:
            img, _ = decode_image(read_file(work_file(index.root, arts[art_id].path)))
        except (BadImageError, OSError):  # unreadable now, or a link out: not an example
            continue
        how = DERIVATIONS[n % len(DERIVATIONS)]
        copy, truth = derive(img, how, rng)
        examples.append(Example(geometry(fa, features(copy)), 1.0, truth, how))
        other = nearest.get(art_id, (None, 0.0))[0]
        if other is not None and frozenset((art_id, other)) not in known \
                and not _same_pixels(index, arts, art_id, other, img) \
                and (fb := cache.get(other)) is not None:
            examples.append(Example(geometry(fa, fb), nearest[art_id][1], None, "negative"))
        if (n + 1) % 50 == 0:
            say(f"{n + 1} of {len(chosen)} works")
    for pa, pb, label in labels:
        missing = [p for p in (pa, pb) if p not in by_path]
        if missing:
            raise MetadataError(f"labelled pair {pa} / {pb}: {missing[0]} is not indexed; "
                                "`artsearch info --works` lists the indexed paths")
        fa, fb = cache.get(by_path[pa]), cache.get(by_path[pb])
        if fa is not None and fb is not None:
            examples.append(Example(geometry(fa, fb), 1.0, label, "label"))
    fit, held = split_halves(examples, seed)
    t = calibrate(fit, load_thresholds(index)[0])
    record = thresholds_record(
        t, fit, held, space=space, works=len(chosen), labels=len(labels), seed=seed,
        made=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        unreadable=[p for p, _ in cache.unreadable])
    save_thresholds(index, record)
    return record
