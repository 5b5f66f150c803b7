"""What each layer of a backbone sees in a picture: its strongest feature maps, its Gram
matrix, and which works of the collection it alone would call nearest — so texture can be
seen giving way to content from the first layer to the last (`artsearch layers`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from artsearch.backbones import BackboneSpec
    from artsearch.index import ArtIndex

__all__ = ["LayerView", "collection_vectors", "layer_views", "nearest_by_layer"]

GRAM_SIDE = 128  # a Gram matrix is shown at most this many cells a side (block means)


@dataclass
class LayerView:
    name: str
    channels: int
    grid: tuple[int, int]           # the map's height and width
    maps: list[tuple[int, np.ndarray]]  # (channel, map scaled to 0-1), strongest first
    gram: np.ndarray                # (<= GRAM_SIDE, <= GRAM_SIDE), scaled to 0-1
    vector: np.ndarray              # the layer's average-pooled unit vector


def _extractor(spec: BackboneSpec, layers: tuple[str, ...]) -> Any:
    from artsearch.extract import Extractor

    return Extractor(spec, layer=layers, pooling="avg", precision="fp32", num_workers=0)


def layer_views(spec: BackboneSpec, picture: Image.Image, *, maps: int = 6,
                layers: tuple[str, ...] | None = None) -> list[LayerView]:
    """Each layer's view of the picture (as the backbone is fed it: resized, centre crop)."""
    import torch

    from artsearch.extract import prepare

    names = layers or tuple(spec.layers)
    ex = _extractor(spec, names)
    with torch.inference_mode():
        fmaps = ex.feature_maps(prepare(picture.convert("RGB"), spec.preprocess)[None])
    out = []
    for name, fmap in zip(names, fmaps, strict=True):
        f = fmap[0].double().cpu().numpy()  # (C, H, W)
        strength = f.mean(axis=(1, 2))
        top = np.argsort(-strength, kind="stable")[:maps]
        shown = [(int(c), _unit_range(f[c])) for c in top]
        flat = f.reshape(f.shape[0], -1)
        g = flat @ flat.T / flat.shape[1]
        out.append(LayerView(name, f.shape[0], (f.shape[1], f.shape[2]), shown,
                             _unit_range(_block_mean(g, GRAM_SIDE)), _unit(strength)))
    return out


def _unit_range(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n else v


def _block_mean(g: np.ndarray, side: int) -> np.ndarray:
    """A square matrix shrunk to at most `side` cells a side by averaging blocks."""
    c = g.shape[0]
    if c <= side:
        return g
    edges = np.linspace(0, c, side + 1).astype(int)
    return np.array([[g[a:b, x:y].mean() for x, y in zip(edges, edges[1:], strict=False)]
                     for a, b in zip(edges, edges[1:], strict=False)])


def collection_vectors(index: ArtIndex, spec: BackboneSpec, layers: tuple[str, ...], *,
                       sample: int = 2000) -> tuple[list[Any], dict[str, np.ndarray]]:
    """Every indexed work's average-pooled unit vector at each layer (one pass over the
    files; at most `sample` works, evenly spaced); works whose file cannot be read are left
    out. Returns (works, {layer: (n, C) matrix})."""
    from artsearch.index.catalogue import artworks

    works = artworks(index)
    if len(works) > sample:
        works = [works[i] for i in np.linspace(0, len(works) - 1, sample).astype(int)]
    root = index.root
    if root is None or not works:
        return [], {}
    from artsearch.paths import inside

    # Works whose file leads out of the collection (a link) are never read.
    works = [w for w in works if inside(root, w.path) is not None]
    ex = _extractor(spec, layers)  # one pass: every layer's average, side by side
    got: dict[int, np.ndarray] = {}
    for batch in ex.iter_files([root / w.path for w in works]):
        for i, v in zip(batch.indices, batch.vectors, strict=True):
            got[i] = v
    order = sorted(got)
    if not order:
        return [], {}
    matrix = np.vstack([got[i] for i in order])
    out, at = {}, 0
    for name in layers:  # split the concatenation back into unit vectors per layer
        width = spec.layers[name]
        part = matrix[:, at:at + width]
        out[name] = part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)
        at += width
    return [works[i] for i in order], out


def nearest_by_layer(views: list[LayerView], works: list[Any],
                     vectors: dict[str, np.ndarray], k: int = 5,
                     exclude: Path | None = None) -> dict[str, list[tuple[Any, float]]]:
    """For each layer, the k works nearest to the picture by that layer alone."""
    out: dict[str, Any] = {}
    for view in views:
        m = vectors.get(view.name)
        if m is None or not len(m):
            out[view.name] = []
            continue
        sims = m @ view.vector
        order = np.argsort(-sims, kind="stable")
        out[view.name] = [(works[i], float(sims[i])) for i in order
                          if exclude is None or works[i].path != exclude.as_posix()][:k]
    return out
