"""Why two works match: where in each picture the similarity comes from, and how much each
space gave to a blend.

For an average-pooled vector the cosine decomposes exactly over spatial positions. With
query feature map f_i (N positions), result map g_j (M positions), pooled u = mean_i f_i - c
and w = mean_j g_j - c (c: a fitted centre, zero for avg),

    cos(u, w) = sum_i <f_i - c, w> / (N |u| |w|) = sum_j <g_j - c, u> / (M |u| |w|),

so the terms of either sum form a map over that picture which adds up to the score: positive
where the region pulls the two together, negative where it pushes them apart. Other poolings
(max, GeM, Gram, mean+std, several layers) are not sums over positions; for them each part of
a picture is hidden in turn (filled with the picture's mean colour) and the similarity taken
again (occlusion, as Zeiler and Fergus probed networks): the map is how much the similarity
falls when that part is hidden. It shows what matters, but does not add up to the score.

Either map is drawn over the square the model saw (its shorter side resized, the centre
kept: the view that the stored vectors are of) or over the whole picture (nothing cut; its
similarity then is of the whole pictures, which the space did not store).
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

__all__ = ["DECOMPOSABLE", "VIEWS", "PairMaps", "blend_shares", "heat_png", "pair_maps",
           "whole_pixels"]

DECOMPOSABLE = ("avg", "cavg")
VIEWS = ("square", "whole")  # the centre square the model saw, or the whole picture
OCCLUSION_CELLS = 7  # an occlusion map hides cells 1/7 of the model's input side
LONGEST = 3  # the whole view: the long side at most 3x the short one (a scroll is cut down)


@dataclass
class PairMaps:
    """The two similarity maps of a pair (rows x cols of the layer's grid) and the cosine
    they add up to (of the features as recomputed here, in float64)."""

    query: np.ndarray
    result: np.ndarray
    cosine: float
    method: str = "decomposition"  # or "occlusion": the fall in similarity when hidden
    view: str = "square"

    def as_dict(self, decimals: int = 6) -> dict[str, Any]:
        return {"cosine": round(self.cosine, decimals), "method": self.method,
                "view": self.view,
                "sum_query": round(float(self.query.sum()), decimals),
                "sum_result": round(float(self.result.sum()), decimals),
                "grid_query": list(self.query.shape), "grid_result": list(self.result.shape),
                "query": np.round(self.query, decimals).tolist(),
                "result": np.round(self.result, decimals).tolist()}


def decomposes(extractor: Extractor) -> bool:
    """Whether the extractor's similarity is a sum over positions (one layer, avg or cavg)."""
    return extractor.pooling in DECOMPOSABLE and len(extractor.layers) == 1


def whole_pixels(img: Image.Image, pre: Any) -> Any:
    """The whole picture as uint8 (3, H, W): its shorter side at the size the model's square
    is cut from, its longer at most LONGEST times that; nothing cut away."""
    import torch
    from PIL import Image as PILImage

    from artsearch.extract import crop_extreme

    img = crop_extreme(img.convert("RGB"))
    w, h = img.size
    scale = min(pre.resize / min(w, h), LONGEST * pre.resize / max(w, h))
    size = (max(32, round(w * scale)), max(32, round(h * scale)))
    arr = np.asarray(img.resize(size, PILImage.Resampling.BICUBIC, reducing_gap=3.0), np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def pair_maps(extractor: Extractor, query: Image.Image, result: Image.Image,
              view: str = "square") -> PairMaps:
    """The similarity maps of two pictures in the extractor's space, over the square the
    model saw or the `view` "whole" picture: the exact decomposition where the space is a
    single-layer avg or cavg one (computed in float64 from the same feature maps the space
    pools), else occlusion maps."""
    import torch

    from artsearch.extract import prepare

    if view not in VIEWS:
        raise MetadataError(f"view {view!r}: one of {', '.join(VIEWS)}")
    pre = extractor.spec.preprocess
    pixels = [prepare(p, pre) if view == "square" else whole_pixels(p, pre)
              for p in (query, result)]
    if not decomposes(extractor):
        return _occlusion(extractor, pixels, view)
    with torch.inference_mode():
        fmaps = [extractor.feature_maps(x[None])[0][0].double().cpu().numpy() for x in pixels]
    centre = extractor.params.get("m0")
    c = np.zeros(fmaps[0].shape[0]) if centre is None else np.asarray(centre, np.float64)
    fq, fr = fmaps[0] - c[:, None, None], fmaps[1] - c[:, None, None]
    u, w = fq.mean(axis=(1, 2)), fr.mean(axis=(1, 2))
    nu, nw = np.linalg.norm(u), np.linalg.norm(w)
    if nu == 0 or nw == 0:
        raise MetadataError("a picture has an all-zero feature vector: nothing to explain")
    cq = np.einsum("chw,c->hw", fq, w) / (fq.shape[1] * fq.shape[2] * nu * nw)
    cr = np.einsum("chw,c->hw", fr, u) / (fr.shape[1] * fr.shape[2] * nu * nw)
    return PairMaps(cq, cr, float(u @ w / (nu * nw)), "decomposition", view)


def _occlusion(extractor: Extractor, pixels: list[Any], view: str) -> PairMaps:
    """Occlusion maps: each cell of each picture hidden in turn (its mean colour), the
    similarity to the other picture taken again; a cell's value is the fall."""
    import torch

    whole = [extractor.embed_pixels(x[None])[0].astype(np.float64) for x in pixels]
    cosine = float(whole[0] @ whole[1])
    cell = extractor.spec.preprocess.size / OCCLUSION_CELLS  # the square: 7 x 7 cells
    grids = []
    for x, other in ((pixels[0], whole[1]), (pixels[1], whole[0])):
        _, h, w = x.shape
        rows, cols = max(1, round(h / cell)), max(1, round(w / cell))
        ys = np.linspace(0, h, rows + 1).round().astype(int)
        xs = np.linspace(0, w, cols + 1).round().astype(int)
        fill = x.float().mean(dim=(1, 2)).round().to(torch.uint8)[:, None, None]
        hidden = []
        for r in range(rows):
            for col in range(cols):
                y = x.clone()
                y[:, ys[r]:ys[r + 1], xs[col]:xs[col + 1]] = fill
                hidden.append(y)
        vectors = np.concatenate([extractor.embed_pixels(torch.stack(hidden[i:i + 32]))
                                  for i in range(0, len(hidden), 32)]).astype(np.float64)
        grids.append((cosine - vectors @ other).reshape(rows, cols))
    return PairMaps(grids[0], grids[1], cosine, "occlusion", view)


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
             scale: float, view: str = "square") -> None:
    """The picture with the map laid over it: orange where the region adds to the score,
    blue where it takes away. `view` "square": the picture as the model saw it (shorter side
    resized, centre square), `side` square; "whole": all of it, its longer side `side`. With
    no picture (its licence withholds it), the map alone on grey."""
    from PIL import Image

    from artsearch.extract import crop_extreme

    h, w = grid.shape
    norm = np.clip(grid / scale, -1, 1) if scale > 0 else np.zeros_like(grid)
    colours = np.zeros((h, w, 4), np.float32)
    pos, neg = np.clip(norm, 0, 1), np.clip(-norm, 0, 1)
    colours[..., 0] = 230 * pos + 0 * neg
    colours[..., 1] = 97 * pos + 114 * neg
    colours[..., 2] = 0 * pos + 178 * neg
    colours[..., 3] = 200 * np.maximum(pos, neg)
    img = None if picture is None else crop_extreme(picture.convert("RGB"))
    if view == "whole":
        aspect = img.width / img.height if img is not None else w / h
        size = (side, max(1, round(side / aspect))) if aspect >= 1 else \
            (max(1, round(side * aspect)), side)
    else:
        size = (side, side)
    overlay = Image.fromarray(colours.astype(np.uint8), "RGBA").resize(
        size, Image.Resampling.BILINEAR)
    if img is None:
        base = Image.new("RGBA", size, (217, 217, 214, 255))
    elif view == "whole":
        base = img.resize(size, Image.Resampling.BICUBIC).convert("RGBA")
    else:
        s = side / min(img.size)
        img = img.resize((max(side, round(img.width * s)), max(side, round(img.height * s))),
                         Image.Resampling.BICUBIC)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        base = img.crop((left, top, left + side, top + side)).convert("RGBA")
    Image.alpha_composite(base, overlay).convert("RGB").save(path, "PNG")


def explain_hits(index: Any, result: Any, weights: dict[str, float],
                 query_data: bytes | None,
                 make_extractor: Any = None) -> dict[int, dict[str, Any]]:
    """Per hit (by rank): each space's share of a blend, and for every space whose pooling
    decomposes, the similarity maps (as PairMaps) of the query and the hit.

    `query_data` is the query image's file (None for a text query: no maps). Pictures are
    decoded as indexing decodes them, so the maps add up to the space's own cosine."""
    from artsearch.images import decoded, read_work
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
