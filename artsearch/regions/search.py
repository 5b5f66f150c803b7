"""Searching the region index: works ranked by their best region against a motif, and
the pairs of works a detail joins (for duplicates)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from artsearch.errors import BadImageError, NotIndexedError, OptionError
from artsearch.images import decoded, read_work
from artsearch.index.catalogue import artworks, check_fields, matching_ids, space_works
from artsearch.query import Hit, QueryResult, check_k, read_image_bytes, resolve_query
from artsearch.regions.describe import CANDIDATES, crop_box, query_vector, region_extractor
from artsearch.regions.store import load_regions

if TYPE_CHECKING:
    from artsearch.extract import Extractor
    from artsearch.index import ArtIndex
    from artsearch.index.store import Space


@dataclass
class RegionHit(Hit):
    box: list[float] = field(default_factory=list)  # x, y, w, h as fractions of the picture


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
    check_k(k)
    sp = index.space(space)
    stored = load_regions(index, sp, cached=True)
    if stored is None:
        raise NotIndexedError(
            f"space {sp.name!r} of {index.path} has no region index; build it with "
            f"`artsearch index FOLDER --index {index.path} --space {sp.name} --regions`")
    notes: list[str] = []
    if artwork is None and image is None and image_bytes is None:
        raise OptionError("give an image, or --id with --region")
    data = image_bytes if image_bytes is not None else (
        read_image_bytes(image) if image is not None else None)
    art, described = resolve_query(index, image=image, data=data, artwork=artwork)
    own = art.id if art is not None else None
    if data is None:  # asked by an indexed work: its own file is the picture
        assert art is not None
        data = read_work(index.root, art.path)
        if data is None:
            raise BadImageError(f"{art.path}: its file cannot be read inside the collection; "
                                "re-run `artsearch index`")
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
        allowed = matching_ids(index, where)
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
    arts = {a.id: a for a in artworks(index, [a for a, _ in ranked])}
    hits: list[Hit] = [RegionHit.of(art, rank, score,
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
