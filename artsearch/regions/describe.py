"""How a picture is cut into regions and each described: the windows, their scales, and a
query region's vector (the package's docstring says why)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from artsearch.errors import OptionError

if TYPE_CHECKING:
    from artsearch.backbones import BackboneSpec
    from artsearch.extract import Extractor
    from artsearch.index import ArtIndex
    from artsearch.index.store import Space

# (long side of the resized picture for a 224-pixel backbone, window side as a fraction of
# the feature map's long side); windows step by STRIDE of their side.
SCALES = ((448, 0.5), (800, 0.28))
STRIDE = 3 / 7
SNAP = 32            # picture sides are multiples of the backbone's total stride
CANDIDATES = 300      # regions fetched per query (at least 30 per result asked for)


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
