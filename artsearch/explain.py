"""Why two works match: where in each picture the similarity comes from, and how much each
space gave to a blend.

For an average-pooled vector the cosine decomposes exactly over spatial positions. With
query feature map f_i (N positions), result map g_j (M positions), pooled u = mean_i f_i - c
and w = mean_j g_j - c (c: a fitted centre, zero for avg),

    cos(u, w) = sum_i <f_i - c, w> / (N |u| |w|) = sum_j <g_j - c, u> / (M |u| |w|),

so the terms of either sum form a map over that picture which adds up to the score: positive
where the region pulls the two together, negative where it pushes them apart. Other poolings
(max, GeM, Gram, mean+std) are not sums over positions and get no map, only their share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from artsearch.errors import MetadataError

if TYPE_CHECKING:
    from PIL import Image

    from artsearch.extract import Extractor

__all__ = ["DECOMPOSABLE", "PairMaps", "blend_shares", "heat_png", "pair_maps"]

DECOMPOSABLE = ("avg", "cavg")


@dataclass
class PairMaps:
    """The two similarity maps of a pair (rows x cols of the layer's grid) and the cosine
    they add up to (of the features as recomputed here, in float64)."""

    query: np.ndarray
    result: np.ndarray
    cosine: float

    def as_dict(self, decimals: int = 6) -> dict[str, Any]:
        return {"cosine": round(self.cosine, decimals),
                "sum_query": round(float(self.query.sum()), decimals),
                "sum_result": round(float(self.result.sum()), decimals),
                "grid_query": list(self.query.shape), "grid_result": list(self.result.shape),
                "query": np.round(self.query, decimals).tolist(),
                "result": np.round(self.result, decimals).tolist()}


def pair_maps(extractor: Extractor, query: Image.Image, result: Image.Image) -> PairMaps:
    """The similarity maps of two pictures in the extractor's (single-layer, avg or cavg)
    space, computed in float64 from the same feature maps the space pools."""
    import torch

    from artsearch.extract import prepare

    if extractor.pooling not in DECOMPOSABLE or len(extractor.layers) != 1:
        raise MetadataError(
            f"similarity maps need a single-layer avg or cavg space; this one pools "
            f"{extractor.layer} by {extractor.pooling} (its blend share is still given)")
    pre = extractor.spec.preprocess
    pixels = torch.stack([prepare(query, pre), prepare(result, pre)])
    with torch.inference_mode():
        fmaps = extractor.feature_maps(pixels)[0].double().cpu().numpy()  # (2, C, H, W)
    centre = extractor.params.get("m0")
    c = np.zeros(fmaps.shape[1]) if centre is None else np.asarray(centre, np.float64)
    fq, fr = fmaps[0] - c[:, None, None], fmaps[1] - c[:, None, None]
    u, w = fq.mean(axis=(1, 2)), fr.mean(axis=(1, 2))
    nu, nw = np.linalg.norm(u), np.linalg.norm(w)
    if nu == 0 or nw == 0:
        raise MetadataError("a picture has an all-zero feature vector: nothing to explain")
    cq = np.einsum("chw,c->hw", fq, w) / (fq.shape[1] * fq.shape[2] * nu * nw)
    cr = np.einsum("chw,c->hw", fr, u) / (fr.shape[1] * fr.shape[2] * nu * nw)
    return PairMaps(cq, cr, float(u @ w / (nu * nw)))


def blend_shares(weights: dict[str, float], parts: dict[str, dict[str, float]]
                 ) -> dict[str, dict[str, float]]:
    """Each space's part of a blended score: weight x z over the weights' sum, and that
    part's share of the blended score (shares add up to 1)."""
    total = sum(weights.values())
    contrib = {s: weights[s] * parts[s]["z"] / total for s in weights}
    score = sum(contrib.values())
    return {s: {**parts[s], "weight": weights[s], "contribution": round(contrib[s], 6),
                "share": round(contrib[s] / score, 4) if score else float("nan")}
            for s in weights}


def heat_png(picture: Image.Image | None, grid: np.ndarray, path: Path | BinaryIO, side: int,
             scale: float) -> None:
    """The picture (as the model saw it: shorter side resized, centre square) with the map
    laid over it: orange where the region adds to the score, blue where it takes away; with
    no picture (its licence withholds it), the map alone on grey."""
    from PIL import Image

    h, w = grid.shape
    norm = np.clip(grid / scale, -1, 1) if scale > 0 else np.zeros_like(grid)
    colours = np.zeros((h, w, 4), np.float32)
    pos, neg = np.clip(norm, 0, 1), np.clip(-norm, 0, 1)
    colours[..., 0] = 230 * pos + 0 * neg
    colours[..., 1] = 97 * pos + 114 * neg
    colours[..., 2] = 0 * pos + 178 * neg
    colours[..., 3] = 200 * np.maximum(pos, neg)
    overlay = Image.fromarray(colours.astype(np.uint8), "RGBA").resize(
        (side, side), Image.Resampling.BILINEAR)
    if picture is None:
        base = Image.new("RGBA", (side, side), (217, 217, 214, 255))
    else:
        from artsearch.extract import crop_extreme

        img = crop_extreme(picture.convert("RGB"))
        s = side / min(img.size)
        img = img.resize((max(side, round(img.width * s)), max(side, round(img.height * s))),
                         Image.Resampling.BICUBIC)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        base = img.crop((left, top, left + side, top + side)).convert("RGBA")
    Image.alpha_composite(base, overlay).convert("RGB").save(path, "PNG")


def read_work(root: Path | None, path: str) -> bytes | None:
    """The bytes of an indexed work's file, or None when it cannot be read."""
    from artsearch.errors import ArtsearchError
    from artsearch.images import read_file
    from artsearch.paths import work_file

    try:
        return read_file(work_file(root, path))
    except (ArtsearchError, OSError):  # unreadable, a link out of the collection, no root
        return None


def decoded(data: bytes | None, min_side: int = 0) -> Image.Image | None:
    """The picture as the extractor decodes it (JPEG draft scaling down to `min_side`)."""
    from artsearch.errors import BadImageError
    from artsearch.images import decode_image

    if data is None:
        return None
    try:
        return decode_image(data, min_side=min_side)[0]
    except BadImageError:
        return None


def explain_hits(index: Any, result: Any, weights: dict[str, float],
                 query_data: bytes | None,
                 make_extractor: Any = None) -> dict[int, dict[str, Any]]:
    """Per hit (by rank): each space's share of a blend, and for every space whose pooling
    decomposes, the similarity maps (as PairMaps) of the query and the hit.

    `query_data` is the query image's file (None for a text query: no maps). Pictures are
    decoded as indexing decodes them, so the maps add up to the space's own cosine."""
    from artsearch.query import default_extractor

    make = make_extractor or (lambda sp: default_extractor(index, sp))
    extractors: dict[str, Any] = {}
    # Maps are made in float32 whatever the index used (bf16 where the CPU runs it): a few
    # pictures cost nothing, and the cosine they add up to is then the space's own to 1e-4
    # for an index built in float32.
    notes: dict[str, str] = {}
    for name in weights:
        sp = index.space(name)
        layers = (sp.params or {}).get("layers") or sp.layer.split(",")
        if sp.pooling in DECOMPOSABLE and len(layers) == 1 and query_data is not None:
            extractors[name] = make(sp)
            extractors[name].precision = "fp32"
        else:
            notes[name] = ("no map for a text query" if query_data is None else
                           f"no map: {sp.pooling} pooling over {len(layers)} layer(s) is not a "
                           "sum over positions")
    queries = {name: decoded(query_data, ex.spec.preprocess.resize)
               for name, ex in extractors.items()}
    out: dict[int, dict[str, Any]] = {}
    for hit in result.hits:
        entry: dict[str, Any] = {}
        if len(weights) > 1 and hit.spaces:
            entry["spaces"] = blend_shares(weights, hit.spaces)
        else:
            entry["spaces"] = {n: {"share": 1.0} for n in weights}
        data = read_work(index.root, hit.path) if extractors else None
        maps: dict[str, Any] = {}
        for name, ex in extractors.items():
            query, picture = queries[name], decoded(data, ex.spec.preprocess.resize)
            if query is None or picture is None:
                notes.setdefault(name, "no map where a file cannot be read")
                continue
            maps[name] = pair_maps(ex, query, picture)
        entry["maps"] = maps
        entry["notes"] = dict(notes)
        out[hit.rank] = entry
    return out
