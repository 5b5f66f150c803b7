"""The network cut where it is tuned, the frozen part's features cached once per view, and the
style vector computed from them exactly as the product computes it."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from artsearch.errors import ArtsearchError

if TYPE_CHECKING:
    import torch

    from artsearch.backbones import BackboneSpec

from artsearch.learn.data import Work, trim_bars

__all__ = ["CENTRE_SAMPLE", "Cache", "Parts", "build_cache", "embed_rows", "layer_centres",
           "style_vector", "untuned_centres", "untuned_vector"]

CENTRE_SAMPLE = 256  # views the style vector's centres are estimated from, each epoch
Progress = Callable[[str], None]


def _stage_number(layer: str, stages: int) -> int:
    return stages + 1 if layer == "final" else int(layer.removeprefix("stage"))


class Parts:
    """A LiteNet cut at `tune_from`: `front` (frozen) to the stage before it, `tail` (tuned)
    from it to the head; the style layers on each side."""

    def __init__(self, net: Any, tune_from: int, style_layers: Sequence[str],
                 net_spec: BackboneSpec | None = None) -> None:
        import torch

        stages = len(net.blocks)
        if not 2 <= tune_from <= stages:
            raise ArtsearchError(f"--tune-from {tune_from}: choose a stage from 2 to {stages}")
        self.net, self.tune_from, self.stages = net, tune_from, stages
        self.depths = {n: _stage_number(n, stages) for n in style_layers}
        self.frozen = [n for n in style_layers if self.depths[n] < tune_from]
        self.tuned = [n for n in style_layers if self.depths[n] >= tune_from]
        self.tail = torch.nn.ModuleList([*net.blocks[tune_from - 1:], net.head])
        self.style_layers = tuple(style_layers)
        # A start that was itself tuned (lite0-art) differs from the base network from its own
        # first tuned stage: a file written from it holds those stages too.
        start = tuned_from(net_spec) if net_spec else None
        self.saved_from = tune_from if start is None else min(tune_from, start)

    def front(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Input -> (the maps entering the first tuned stage, frozen style layers' maps)."""
        out = {}
        x = self.net.stem(x)
        for depth, stage in enumerate(self.net.blocks[: self.tune_from - 1], 1):
            x = stage(x)
            for n in self.frozen:
                if self.depths[n] == depth:
                    out[n] = x
        return x, out

    def back(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The maps entering the first tuned stage -> the tuned style layers' maps (and
        'final')."""
        out = {}
        for depth, stage in enumerate(self.tail[:-1], self.tune_from):
            x = stage(x)
            for n in self.tuned:
                if self.depths[n] == depth:
                    out[n] = x
        out["final"] = self.tail[-1](x)
        return out

    def tuned_state(self) -> dict[str, torch.Tensor]:
        """The tensors of the stages from `saved_from` and the head: what a weights file
        laid over the base network needs."""
        keep = (*(f"blocks.{i}." for i in range(self.saved_from - 1, self.stages)), "head.")
        # Copies: on the CPU, .cpu() returns the live tensor, which later steps would change
        # under a kept epoch.
        return {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()
                if k.startswith(keep)}


def tuned_from(spec: BackboneSpec) -> int | None:
    """The first stage a backbone's weights change from its base network's (a tuned preset
    such as lite0-art); None for the base network itself."""
    from artsearch.backbones.tuned import load_tuned

    weights, base = spec.weights.verified_path(), spec.extra["base_weights"].verified_path()
    if weights is None or weights == base:
        return None
    return int(load_tuned(weights, spec)["tune_from"])


def _meanstd(fmap: torch.Tensor) -> torch.Tensor:
    import torch

    flat = fmap.float().flatten(2)
    return torch.cat([flat.mean(2), flat.std(2, correction=0)], 1)


# -- the cache of frozen features --

@dataclass
class Cache:
    maps: torch.Tensor  # (works, views, C, H, W) float16: the first tuned stage's input
    frozen: dict[str, torch.Tensor]  # style layer -> (works, views, 2C) float32 meanstd
    content: torch.Tensor  # (works, views, 1280) float16: untuned final average, for distilling
    ok: np.ndarray  # works whose picture decoded
    untuned: dict[str, torch.Tensor] | None = None  # tuned style layer -> (works, views, 2C)
    # float16: its untuned meanstd, for distilling the style vector toward the untuned one


def _views(img: Any, spec: BackboneSpec, views: int, rng: np.random.Generator,
           crop_min: float = 0.25) -> list[Any]:
    """The plain view as `artsearch index` prepares it, then augmented ones: a random crop of
    25-100 % of the area (aspect 3:4 to 4:3), mirrored half the time, at the model's size."""
    import torch
    from PIL import Image

    from artsearch.extract import prepare

    pre = spec.preprocess
    out = [prepare(img, pre)]
    small = img.copy()
    small.thumbnail((pre.size * 3 // 2, pre.size * 3 // 2))
    w, h = small.size
    for _ in range(views - 1):
        for _try in range(10):
            area = w * h * rng.uniform(crop_min, 1.0)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                break
        else:
            cw, ch = min(w, h), min(w, h)
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = small.crop((x0, y0, x0 + cw, y0 + ch)).resize(
            (pre.size, pre.size), Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append(torch.from_numpy(np.asarray(crop, np.uint8).copy()).permute(2, 0, 1))
    return out


def build_cache(works: Sequence[Work], spec: BackboneSpec, parts: Parts, views: int,
                seed: int, device: Any, progress: Progress, failed: list[tuple[str, str]],
                batch: int = 32, crop_min: float = 0.25) -> Cache:
    import torch

    from artsearch.errors import BadImageError
    from artsearch.extract import model_input
    from artsearch.images import decode_image, read_file

    pre = spec.preprocess
    mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1)
    maps = frozen = content = untuned = None
    ok = np.zeros(len(works), bool)
    started = time.perf_counter()
    last = started

    def views_of(i: int) -> list[Any] | str:
        # Each work's own generator: the same views whatever the threads' order.
        try:
            img, _ = decode_image(read_file(works[i].path), min_side=pre.resize)
        except (BadImageError, OSError) as e:
            return str(e)
        if works[i].letterboxed:
            img = trim_bars(img)
        return _views(img.convert("RGB"), spec, views, np.random.default_rng([seed, i]),
                      crop_min)

    # Decoding and cropping release the GIL: threads keep the model fed on several cores.
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    for start in range(0, len(works), batch):
        pixels, rows = [], []
        chunk = range(start, min(start + batch, len(works)))
        for i, made in zip(chunk, pool.map(views_of, chunk), strict=True):
            if isinstance(made, str):
                failed.append((str(works[i].path), made))
                continue
            pixels += made
            rows.append(i)
        if not rows:
            continue
        with torch.no_grad():
            x = model_input(torch.stack(pixels).to(device), pre, mean, std)
            entering, early = parts.front(x)
            late = parts.back(entering)
        shape = (len(rows), views)
        if maps is None:
            maps = torch.zeros((len(works), views, *entering.shape[1:]), dtype=torch.float16)
            frozen = {n: torch.zeros((len(works), views, 2 * early[n].shape[1]))
                      for n in parts.frozen}
            content = torch.zeros((len(works), views, late["final"].shape[1]),
                                  dtype=torch.float16)
            untuned = {n: torch.zeros((len(works), views, 2 * late[n].shape[1]),
                                      dtype=torch.float16) for n in parts.tuned}
        assert frozen is not None and content is not None and untuned is not None
        index = torch.tensor(rows)
        maps[index] = entering.reshape(*shape, *entering.shape[1:]).half().cpu()
        for n in parts.frozen:
            frozen[n][index] = _meanstd(early[n]).reshape(*shape, -1).cpu()
        content[index] = late["final"].float().mean((2, 3)).reshape(*shape, -1).half().cpu()
        for n in parts.tuned:
            untuned[n][index] = _meanstd(late[n]).reshape(*shape, -1).half().cpu()
        ok[rows] = True
        now = time.perf_counter()
        if now - last > 10 or start + batch >= len(works):
            last = now
            done = min(start + batch, len(works))
            progress(f"caching frozen features: {done:,} of {len(works):,} works "
                     f"({done / (now - started):.1f} works/s)")
    pool.shutdown()
    if maps is None:
        raise ArtsearchError("no picture could be read; nothing to learn from")
    assert frozen is not None and content is not None
    return Cache(maps, frozen, content, ok, untuned)


# -- vectors, loss and measures --

def style_vector(parts: Parts, cache: Cache, rows: torch.Tensor, view: torch.Tensor,
           centres: dict[str, torch.Tensor] | None, device: Any
           ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """(the style vector as the product makes it: each layer's meanstd centred and of unit
    length, concatenated, of unit length; each layer's raw meanstd; the final average)."""

    x = cache.maps[rows, view].to(device).float()
    late = parts.back(x)
    raw = {n: cache.frozen[n][rows, view].to(device) for n in parts.frozen}
    raw |= {n: _meanstd(late[n]) for n in parts.tuned}
    return _assemble(parts, raw, centres), raw, late["final"].float().mean((2, 3))


def _assemble(parts: Parts, raw: dict[str, torch.Tensor],
              centres: dict[str, torch.Tensor] | None) -> torch.Tensor:
    """Each layer's meanstd centred and of unit length, in the product's order,
    concatenated and of unit length."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    pieces = [F.normalize(raw[n] - (centres[n] if centres else 0), dim=1)
              for n in parts.style_layers]
    return F.normalize(torch.cat(pieces, 1), dim=1)


def _centre_sample(rows: np.ndarray) -> torch.Tensor:
    """The rows (at most CENTRE_SAMPLE, spread over `rows`) layer centres are taken from."""
    import torch

    return torch.from_numpy(rows[:: max(1, len(rows) // CENTRE_SAMPLE)][:CENTRE_SAMPLE])


def untuned_vector(parts: Parts, cache: Cache, rows: torch.Tensor, view: torch.Tensor,
                   centres: dict[str, torch.Tensor], device: Any) -> torch.Tensor:
    """The untuned network's style vector of these views, from the cache (`centres`: the
    untuned layers' centres, `untuned_centres`)."""
    assert cache.untuned is not None
    raw = {n: cache.frozen[n][rows, view].to(device) for n in parts.frozen}
    raw |= {n: cache.untuned[n][rows, view].to(device).float() for n in parts.tuned}
    return _assemble(parts, raw, centres)


def untuned_centres(parts: Parts, cache: Cache, rows: np.ndarray, device: Any
                    ) -> dict[str, torch.Tensor]:
    """`layer_centres` of the untuned network, from the cache."""
    assert cache.untuned is not None
    sample = _centre_sample(rows)
    out = {n: cache.frozen[n][sample, 0].mean(0).to(device) for n in parts.frozen}
    out |= {n: cache.untuned[n][sample, 0].float().mean(0).to(device) for n in parts.tuned}
    return out


def layer_centres(parts: Parts, cache: Cache, rows: np.ndarray, device: Any
             ) -> dict[str, torch.Tensor]:
    """Each style layer's mean over a sample of plain views: what the product's fitted
    meanstd pooling subtracts."""
    import torch

    sample = _centre_sample(rows)
    with torch.no_grad():
        _, raw, _ = style_vector(parts, cache, sample, torch.zeros(len(sample), dtype=torch.long),
                           None, device)
    return {n: v.mean(0) for n, v in raw.items()}


def embed_rows(parts: Parts, cache: Cache, rows: np.ndarray, device: Any
           ) -> tuple[np.ndarray, np.ndarray]:
    """(style vectors, content vectors) of the plain views of `rows`, as an index of these
    works would store them (centres fitted on the works themselves)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    centres = layer_centres(parts, cache, rows, device)
    styles, contents = [], []
    with torch.no_grad():
        for start in range(0, len(rows), 256):
            chunk = torch.from_numpy(rows[start: start + 256])
            v, _, c = style_vector(parts, cache, chunk, torch.zeros(len(chunk), dtype=torch.long),
                             centres, device)
            styles.append(v.cpu().numpy())
            contents.append(F.normalize(c, dim=1).cpu().numpy())
    return np.concatenate(styles), np.concatenate(contents)


