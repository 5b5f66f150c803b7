"""Pooling: how feature maps (N, C, H, W) become one vector per image.

Each pooling turns one layer's map into a vector; with several layers, each layer's vector is
L2-normalised before they are concatenated, so every layer has the same say in a similarity.

    avg      channel means: what is present, wherever it is (content)
    cavg     channel means centred on the collection's mean (fitted, as below): content
             without what every painting shares
    max      channel maxima: the strongest response of each detector
    gem      generalised mean, p = 3: between avg and max, a retrieval favourite (Radenović)
    meanstd  channel means and standard deviations: the AdaIN statistics of a style
    gram     Gatys Gram matrices (channel co-activations: texture and brushwork), sketched
    rmac     regional maxima (R-MAC, Tolias et al. 2016): max-pooled square regions at three
             scales, each of unit length, summed; an instance-retrieval descriptor (the same
             work cropped, a detail) rather than a style one

A Gram matrix has C(C+1)/2 distinct values per layer (131,328 for a 512-channel layer), too
many to store. `gram` reduces each layer to GRAM_DIMS values by a fixed bilinear sketch,
y_k = u_kᵀ G v_k with Gaussian u_k, v_k drawn from a seeded generator, whose dot products
estimate the Frobenius inner products of the Gram matrices without bias.

Style statistics of all paintings share a large common part (the mean activation), which
drowns the differences in a cosine. So the two style poolings are *fitted*: each layer's
vector is centred by its mean over a sample of the collection, learnt once when the space is
created and stored beside it (`<space>.pooling.npz`, with the gram matrices). On the dev set
centring raised WikiArt-style mAP@10 from 0.213 to 0.261 for meanstd and from 0.221 to 0.245
for gram (Lite0 stage4, stage6, final; benchmarks/README.md).

The functions only call tensor methods, so planning code can import this module (and ask for
dimensions) without loading torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from artsearch.errors import BackboneError

if TYPE_CHECKING:
    import torch

__all__ = ["GRAM_DIMS", "POOLINGS", "Pooling", "get_pooling", "gram_projection", "pool_layers"]

GRAM_DIMS = 512  # sketch size per layer
GEM_P = 3.0
GRAM_SEED = 20261127
FIT_SAMPLE = 64  # images a fitted pooling learns its centre from

Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class Pooling:
    name: str
    pool: Callable[[torch.Tensor, Params, int], torch.Tensor]  # (fmap, params, layer index)
    dims: Callable[[int], int]  # output size for C input channels
    description: str
    fitted: bool = False  # centred by a mean learnt from a sample before vectors are final


def _avg(fmap: torch.Tensor, params: Params, i: int) -> torch.Tensor:
    return fmap.mean(dim=(2, 3))


def _cavg(fmap: torch.Tensor, params: Params, i: int) -> torch.Tensor:
    return _centred(fmap.mean(dim=(2, 3)), params, i)


def _max(fmap: torch.Tensor, params: Params, i: int) -> torch.Tensor:
    return fmap.amax(dim=(2, 3))


def _gem(fmap: torch.Tensor, params: Params, i: int) -> torch.Tensor:
    # GeM is defined on non-negative (post-ReLU) maps; negative responses count as zero.
    return fmap.clamp_min(1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)


RMAC_LEVELS = 3


def rmac_regions(h: int, w: int, levels: int = RMAC_LEVELS) -> list[tuple[int, int, int]]:
    """(top, left, side) of R-MAC's square regions: at level l, side 2·min(h, w)/(l + 1)
    (level 1: the whole short side, centred), l positions along each axis, spread evenly from
    edge to edge (Tolias et al.: 1 + 4 + 9 regions on a square map)."""
    short = min(h, w)
    out = []
    for level in range(1, levels + 1):
        side = short if level == 1 else max(1, round(2 * short / (level + 1)))
        steps = level
        tops = sorted({round(t) for t in np.linspace(0, h - side, steps)}) if steps > 1 else \
            [(h - side) // 2]
        lefts = sorted({round(t) for t in np.linspace(0, w - side, steps)}) if steps > 1 else \
            [(w - side) // 2]
        out += [(t, left, side) for t in tops for left in lefts]
    return out


def _rmac(fmap: torch.Tensor, params: Params, i: int) -> torch.Tensor:
    import torch

    total = None
    for top, left, side in rmac_regions(fmap.shape[2], fmap.shape[3]):
        region = fmap[:, :, top:top + side, left:left + side].amax(dim=(2, 3))
        region = torch.nn.functional.normalize(region, dim=1)
        total = region if total is None else total + region
    assert total is not None
    return total


def _meanstd(fmap: torch.Tensor, params: Params, i: int) -> torch.Tensor:
    flat = fmap.flatten(2)
    return _centred(_cat(flat.mean(dim=2), flat.std(dim=2, correction=0)), params, i)


def _centred(vectors: torch.Tensor, params: Params, i: int) -> torch.Tensor:
    centre = params.get(f"m{i}")
    return vectors if centre is None else vectors - vectors.new_tensor(centre)


def _cat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.cat([a, b], dim=1)


def gram_matrices(fmap: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C): co-activations averaged over positions, unit Frobenius norm."""
    n, c, h, w = fmap.shape
    flat = fmap.reshape(n, c, h * w)
    gram = flat @ flat.transpose(1, 2) / (h * w)
    scaled: torch.Tensor = gram / gram.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]
    return scaled


def _gram(fmap: torch.Tensor, params: Params, i: int) -> torch.Tensor:
    n, c, h, w = fmap.shape
    flat = fmap.float().reshape(n, c, h * w)
    u = flat.new_tensor(params[f"u{i}"])
    v = flat.new_tensor(params[f"v{i}"])
    if h * w >= c:  # early layers: many positions, few channels; form G (C x C) itself
        gram = gram_matrices(fmap.float())
        sketch = ((gram @ v) * u).sum(dim=1)  # y_k = u_kᵀ G v_k
    else:
        # Late layers (e.g. 1280 channels at 7 x 7): never form G. With F the (C, P) map,
        # u_kᵀ G v_k = Σ_p (f_p·u_k)(f_p·v_k) / P, and |G|_F = |Fᵀ F|_F / P (a P x P product).
        fu, fv = flat.transpose(1, 2) @ u, flat.transpose(1, 2) @ v  # (N, P, d)
        inner = flat.transpose(1, 2) @ flat  # (N, P, P)
        norm = inner.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None]
        sketch = (fu * fv).sum(dim=1) / norm
    return _centred(sketch / math.sqrt(u.shape[1]), params, i)


def gram_projection(channels: Sequence[int], seed: int = GRAM_SEED) -> Params:
    """The sketch matrices for layers of the given widths (legacy RandomState: stable output)."""
    rng = np.random.RandomState(seed)
    params: Params = {}
    for i, c in enumerate(channels):
        params[f"u{i}"] = rng.standard_normal((c, GRAM_DIMS)).astype(np.float32)
        params[f"v{i}"] = rng.standard_normal((c, GRAM_DIMS)).astype(np.float32)
    return params


POOLINGS: dict[str, Pooling] = {
    p.name: p
    for p in [
        Pooling("avg", _avg, lambda c: c, "channel means: what is present (content)"),
        Pooling("cavg", _cavg, lambda c: c,
                "channel means centred on the collection's mean: content, less what all "
                "paintings share", fitted=True),
        Pooling("max", _max, lambda c: c, "channel maxima: the strongest response per detector"),
        Pooling("gem", _gem, lambda c: c, f"generalised mean, p = {GEM_P:g}: between avg and max"),
        Pooling("meanstd", _meanstd, lambda c: 2 * c,
                "channel means and standard deviations (AdaIN statistics), centred: style",
                fitted=True),
        Pooling("rmac", _rmac, lambda c: c,
                "regional maxima at 3 scales (R-MAC): the same work cropped, or a detail"),
        Pooling("gram", _gram, lambda c: GRAM_DIMS,
                f"Gatys Gram matrices, sketched to {GRAM_DIMS} values per layer: style",
                fitted=True),
    ]
}


def get_pooling(name: str) -> Pooling:
    try:
        return POOLINGS[name]
    except KeyError:
        raise BackboneError(
            f"unknown pooling {name!r}; choose one of: {', '.join(POOLINGS)}"
        ) from None


def pool_layers(
    pooling: Pooling, fmaps: Sequence[torch.Tensor], params: Params,
    shares: Sequence[float] | None = None,
) -> torch.Tensor:
    """Pool each layer, give each unit length, concatenate: (N, sum of per-layer dims).
    `shares` weights each layer's part by the square root of its share, so that the cosine
    of two (re-normalised) vectors is the shares' weighted mean of the layers' cosines."""
    import torch

    parts = [pooling.pool(fmap.float(), params, i) for i, fmap in enumerate(fmaps)]
    if len(parts) == 1:
        return parts[0]
    units = [torch.nn.functional.normalize(p, dim=1) for p in parts]
    if shares is not None:
        units = [u * float(s) ** 0.5 for u, s in zip(units, shares, strict=True)]
    return torch.cat(units, dim=1)
