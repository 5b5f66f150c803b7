"""Batched feature extraction: decode in worker processes, embed on CPU or GPU, one code path."""

from __future__ import annotations

import io
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from artsearch.backbones import BackboneSpec, Preprocess
from artsearch.errors import BadImageError
from artsearch.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    FileRead,
    decode_image,
    read_snapshot,
)
from artsearch.pooling import FIT_SAMPLE, Params, get_pooling, gram_projection, pool_layers

__all__ = [
    "EmbeddedBatch", "Extractor", "crop_extreme", "model_input", "pick_device", "pick_precision",
]

Precision = Literal["auto", "fp32", "bf16"]
Decode = Literal["auto", "cpu", "gpu"]


def pick_device(device: str | None = None) -> torch.device:
    """The requested device, or CUDA when present, else the CPU."""
    if device and device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_has_bf16() -> bool:
    """True where the CPU has native bf16 arithmetic (AVX512-BF16 or AMX), so autocast pays."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # older torch without the probes
        return False


def pick_precision(device: torch.device, precision: Precision = "auto") -> Literal["fp32", "bf16"]:
    """bf16 autocast where the hardware runs it natively; fp32 elsewhere.

    bf16 is the default only because tests/test_bf16_fidelity.py holds it to the fp32
    features (mean cosine >= 0.995, top-10 neighbour overlap >= 0.9 on the dev set).
    """
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_bf16() else "fp32"


# Above this ratio of long to short side, the long side is cropped before resizing: an 80000x4
# strip would otherwise be resized to millions of pixels long only to be cut to a square.
MAX_ASPECT = 4.0


def crop_extreme(img: Image.Image) -> Image.Image:
    """The centre of a picture whose long side exceeds MAX_ASPECT times its short side (the
    model sees a centred square anyway), so resizing never allocates more than that."""
    w, h = img.size
    if max(w, h) <= MAX_ASPECT * min(w, h):
        return img
    keep = math.ceil(MAX_ASPECT * min(w, h))
    if w > h:
        return img.crop(((w - keep) // 2, 0, (w - keep) // 2 + keep, h))
    return img.crop((0, (h - keep) // 2, w, (h - keep) // 2 + keep))


def prepare(img: Image.Image, pre: Preprocess) -> torch.Tensor:
    """Resize the shorter side, centre-crop, and return uint8 pixels (3, size, size)."""
    img = crop_extreme(img)
    w, h = img.size
    scale = pre.resize / min(w, h)
    nw, nh = max(pre.size, round(w * scale)), max(pre.size, round(h * scale))
    resample = (Image.Resampling.BICUBIC if pre.interpolation == "bicubic"
                else Image.Resampling.BILINEAR)
    img = img.resize((nw, nh), resample, reducing_gap=3.0)
    left, top = (nw - pre.size) // 2, (nh - pre.size) // 2
    img = img.crop((left, top, left + pre.size, top + pre.size))
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def model_input(pixels: torch.Tensor, pre: Preprocess, mean: torch.Tensor, std: torch.Tensor
                ) -> torch.Tensor:
    """uint8 (N, 3, S, S) RGB pixels -> the normalised float input the backbone expects
    (scaled, channel order, mean and std as its preprocessing says; channels-last)."""
    # Reordered while still bytes, then one fused multiply-add: (x * scale/255 - mean) / std.
    x = pixels.contiguous(memory_format=torch.channels_last).float()
    if pre.channel_order == "BGR":
        x = x.flip(1)
    return torch.addcmul(-mean / std, x, (pre.scale / 255.0) / std).contiguous(
        memory_format=torch.channels_last)


def prepare_on_device(img: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    """`prepare` for a decoded (3, H, W) uint8 tensor already on the GPU (antialiased resize)."""
    _, h, w = img.shape
    scale = pre.resize / min(w, h)
    nw, nh = max(pre.size, round(w * scale)), max(pre.size, round(h * scale))
    out = torch.nn.functional.interpolate(
        img[None].float(), size=(nh, nw), mode=pre.interpolation, antialias=True,
        align_corners=False)
    left, top = (nw - pre.size) // 2, (nh - pre.size) // 2
    out = out[0, :, top: top + pre.size, left: left + pre.size]
    return out.clamp_(0, 255).round_().to(torch.uint8)


def plain_jpeg_size(data: bytes, max_pixels: int) -> tuple[int, int] | None:
    """(width, height) of a JPEG that nvJPEG can decode exactly as Pillow would: baseline,
    RGB or greyscale, upright (no EXIF rotation), within the pixel limit. Else None."""
    if data[:3] != b"\xff\xd8\xff":
        return None
    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
        w, h = img.size
        if (img.format != "JPEG" or img.mode not in ("RGB", "L") or img.info.get("progressive")
                or img.info.get("progression") or not 0 < w * h <= max_pixels
                or img.getexif().get(0x0112, 1) != 1):
            return None
        return w, h
    except Exception:  # noqa: BLE001 - anything odd takes the careful CPU path
        return None


@dataclass
class _Item:
    index: int
    pixels: torch.Tensor | None
    width: int = 0
    height: int = 0
    reason: str = ""
    jpeg: torch.Tensor | None = None  # undecoded bytes, for decoding on the GPU
    read: FileRead | None = None  # hash, size and time of the bytes decoded


class ImageFiles(torch.utils.data.Dataset[_Item]):
    """Reads and decodes one file per item; a bad file becomes a reason, never an exception.

    With `gpu_jpeg`, plain JPEGs are only read and checked here, and decoded on the GPU in
    the main process (`Extractor._decode_jpegs`); everything else is decoded here.
    """

    def __init__(self, paths: Sequence[Path], pre: Preprocess, max_pixels: int,
                 gpu_jpeg: bool = False, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.paths = list(paths)
        self.pre = pre
        self.max_pixels = max_pixels
        self.gpu_jpeg = gpu_jpeg
        self.max_bytes = max_bytes

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> _Item:
        try:
            data, read = read_snapshot(self.paths[index], self.max_bytes)
            size = plain_jpeg_size(data, self.max_pixels) if self.gpu_jpeg else None
            if size is not None:
                raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
                return _Item(index, None, size[0], size[1], jpeg=raw, read=read)
            img, (w, h) = decode_image(data, min_side=self.pre.resize,
                                       max_pixels=self.max_pixels)
            return _Item(index, prepare(img, self.pre), w, h, read=read)
        except BadImageError as e:
            return _Item(index, None, reason=str(e))
        except Exception as e:  # noqa: BLE001 - one odd file must not end a long run
            return _Item(index, None, reason=f"could not decode ({type(e).__name__}: {e})")


@dataclass
class EmbeddedBatch:
    """One batch's results: `indices[i]` (into the input list) has vector `vectors[i]`."""

    indices: list[int]
    vectors: np.ndarray
    sizes: list[tuple[int, int]]
    failures: list[tuple[int, str]] = field(default_factory=list)
    reads: list[FileRead] = field(default_factory=list)  # per index: the bytes embedded


def collate_batch(items: list[_Item]) -> tuple[list[_Item], torch.Tensor | None]:
    """Stack the CPU-decoded pixels; items keep their reasons and any undecoded JPEG bytes."""
    ok = [it for it in items if it.pixels is not None]
    pixels = torch.stack([it.pixels for it in ok]) if ok else None  # type: ignore[misc]
    for it in ok:
        it.pixels = None  # the stacked tensor carries them; don't send them twice
    return items, pixels


class Extractor:
    """Turns images into L2-normalised vectors with one backbone, its layers and a pooling.

    `layer` is a layer name, several joined by commas, or a tuple of names (None: the
    backbone's default, or its style layers for a style pooling). A fitted pooling (gram)
    takes its stored `params`; without them it starts from fresh projections, and `fit`
    learns the rest from a sample.
    """

    def __init__(
        self,
        spec: BackboneSpec,
        *,
        layer: str | tuple[str, ...] | None = None,
        pooling: str = "avg",
        params: Params | None = None,
        device: str | None = None,
        precision: Precision = "auto",
        batch_size: int | None = None,
        num_workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        decode: Decode = "auto",
    ) -> None:
        self.pool = get_pooling(pooling)
        self.spec = spec
        self.layers = layer if isinstance(layer, tuple) else spec.parse_layers(layer, pooling)
        self.pooling = pooling
        if params is None and pooling == "gram":
            params = gram_projection([spec.layers[n] for n in self.layers])
        self.params: Params = params or {}
        self.device = pick_device(device)
        self.precision = pick_precision(self.device, precision)
        self.batch_size = batch_size or default_batch_size(self.device)
        self.num_workers = default_workers(self.device) if num_workers is None else num_workers
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self.decode = pick_decode(self.device, decode)
        self.dims = spec.dims(self.layers, pooling)
        self.shares = spec.shares(self.layers)
        self._model: torch.nn.Module | None = None
        self._building = threading.Lock()

    @property
    def layer(self) -> str:
        """The layers as stored in a space: names joined by commas."""
        return ",".join(self.layers)

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            with self._building:  # two threads (the app's uploads) build it once
                if self._model is None:
                    pre = self.spec.preprocess
                    shape = (1, 3, 1, 1)
                    self._mean = torch.tensor(pre.mean, device=self.device).view(shape)
                    self._std = torch.tensor(pre.std, device=self.device).view(shape)
                    # Typed loosely: torch's stubs for Module.to differ between releases.
                    model: Any = self.spec.build(self.spec, self.layers).to(self.device)
                    # Set last: a thread that sees the model sees its mean and std too.
                    self._model = model.to(memory_format=torch.channels_last).eval()
        return self._model

    def describe(self) -> dict[str, Any]:
        return {"device": str(self.device), "precision": self.precision,
                "batch_size": self.batch_size, "workers": self.num_workers,
                "decode": self.decode}

    @torch.inference_mode()
    def feature_maps(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """uint8 (N, 3, S, S) RGB pixels -> the model's feature map for each layer."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=self.precision == "bf16"):
            return self._maps(pixels)

    def _maps(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        model = self.model
        x = model_input(pixels.to(self.device, non_blocking=True), self.spec.preprocess,
                        self._mean, self._std)
        out = model(x)
        return [f.float() for f in (out if isinstance(out, list | tuple) else [out])]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """The same unit vectors as `embed_pixels`, as a tensor that gradients flow through:
        fine-tuning trains this very trunk, preprocessing and pooling (the caller chooses
        autocast and grad mode)."""
        pooled = pool_layers(self.pool, self._maps(pixels), self.params, self.shares)
        return torch.nn.functional.normalize(pooled, dim=1)

    @torch.inference_mode()
    def embed_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """uint8 (N, 3, S, S) in RGB -> float32 (N, dims), each row of unit length."""
        pooled = pool_layers(self.pool, self.feature_maps(pixels), self.params,
                             self.shares)
        pooled = torch.nn.functional.normalize(pooled, dim=1)
        return pooled.cpu().numpy().astype(np.float32, copy=False)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed decoded RGB pictures (queries); see `images.decode_image`."""
        if not images:
            return np.zeros((0, self.dims), np.float32)
        return self.embed_pixels(torch.stack([prepare(im, self.spec.preprocess) for im in images]))

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed text queries into the image space of a joint image-text model (CLIP)."""
        from artsearch.errors import BackboneError

        model = self.model
        if not self.spec.text or not hasattr(model, "embed_text"):
            raise BackboneError(f"{self.spec.name} has no text encoder; text queries need an "
                                "open_clip space (artsearch index DIR --space clip "
                                "--backbone open_clip:ARCH/TAG)")
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=self.precision == "bf16"):
            embed_text: Callable[[list[str]], torch.Tensor] = getattr(model, "embed_text")  # noqa: B009
            vectors = embed_text(list(texts)).float()
        vectors = torch.nn.functional.normalize(vectors, dim=1)
        return vectors.cpu().numpy().astype(np.float32, copy=False)

    def fit(self, paths: Sequence[Path], sample: int = FIT_SAMPLE) -> Params:
        """Learn a fitted pooling's centre (the mean raw sketch per layer) from a sample.

        The sample is evenly spaced over `paths` (sorted by the caller), so it is the same
        for the same collection. Returns the complete params, which are also kept.
        """
        if not self.pool.fitted:
            return self.params
        chosen = list(paths)[:: max(1, len(paths) // sample)][:sample]
        params = {k: v for k, v in self.params.items() if not k.startswith("m")}
        sums: list[torch.Tensor] = []
        count = 0
        for pixels in self._pixel_batches(chosen):
            with torch.inference_mode():
                fmaps = self.feature_maps(pixels)
                raw = [self.pool.pool(f, params, i).sum(0) for i, f in enumerate(fmaps)]
            sums = raw if not sums else [a + b for a, b in zip(sums, raw, strict=True)]
            count += len(pixels)
        if not count:
            raise BadImageError("none of the sample images could be read to fit the pooling")
        for i, total in enumerate(sums):
            params[f"m{i}"] = (total / count).cpu().numpy().astype(np.float32)
        self.params = params
        return params

    def _pixel_batches(self, paths: Sequence[Path]) -> Iterator[torch.Tensor]:
        loader = torch.utils.data.DataLoader(
            ImageFiles(paths, self.spec.preprocess, self.max_pixels, max_bytes=self.max_bytes),
            batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=collate_batch)
        for _, pixels in loader:
            if pixels is not None:
                yield pixels

    def iter_files(self, paths: Sequence[Path]) -> Iterator[EmbeddedBatch]:
        """Embed files batch by batch, in worker processes; bad files come back as failures."""
        if not paths:
            return
        self.spec.weights.verified_path()  # a missing or damaged file fails before any work
        loader = torch.utils.data.DataLoader(
            ImageFiles(paths, self.spec.preprocess, self.max_pixels,
                        gpu_jpeg=self.decode == "gpu", max_bytes=self.max_bytes),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate_batch,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.num_workers else None,
        )
        batches = iter(loader)  # workers fork and start decoding while the model loads
        _ = self.model
        for items, pixels in batches:
            on_gpu = [it for it in items if it.jpeg is not None]
            on_cpu = [it for it in items if it.jpeg is None and not it.reason]
            if on_gpu:
                decoded = self._decode_jpegs(on_gpu)
                if pixels is not None:
                    decoded = torch.cat([pixels.to(self.device, non_blocking=True), decoded])
                pixels = decoded if len(decoded) else pixels
            # Row order of `pixels`: CPU-decoded items first, then the GPU-decoded ones.
            ok = on_cpu + [it for it in on_gpu if not it.reason]
            vectors = self.embed_pixels(pixels) if pixels is not None and len(pixels) else \
                np.zeros((0, self.dims), np.float32)
            yield EmbeddedBatch(
                indices=[it.index for it in ok],
                vectors=vectors,
                sizes=[(it.width, it.height) for it in ok],
                failures=[(it.index, it.reason) for it in items if it.reason],
                reads=[it.read for it in ok if it.read is not None],
            )

    def _decode_jpegs(self, items: list[_Item]) -> torch.Tensor:
        """Decode JPEG bytes on the GPU with nvJPEG, in one batched call; prepare them there.

        nvJPEG returns nothing for a whole batch if one file fails, so on an error each file
        is decoded on the CPU instead, and the bad one gets its reason.
        """
        from torchvision.io import ImageReadMode, decode_jpeg

        pre = self.spec.preprocess
        try:
            with warnings.catch_warnings():
                # torchvision 0.29 deprecates its decoders in favour of TorchCodec; they work.
                warnings.simplefilter("ignore", DeprecationWarning)
                images = decode_jpeg([it.jpeg for it in items if it.jpeg is not None],
                                     mode=ImageReadMode.RGB, device=self.device)
            out = [prepare_on_device(img, pre) for img in images]
        except RuntimeError:
            out = []
            for it in items:
                try:
                    img, _ = decode_image(it.jpeg.numpy().tobytes(),  # type: ignore[union-attr]
                                          min_side=pre.resize, max_pixels=self.max_pixels)
                    out.append(prepare(img, pre).to(self.device))
                except BadImageError as e:
                    it.reason = str(e)
                except Exception as e:  # noqa: BLE001 - as in the worker: one file, one reason
                    it.reason = f"could not decode ({type(e).__name__}: {e})"
        for it in items:
            it.jpeg = None
        size = pre.size
        return torch.stack(out) if out else torch.zeros((0, 3, size, size), dtype=torch.uint8,
                                                        device=self.device)


def pick_decode(device: torch.device, decode: Decode = "auto") -> Literal["cpu", "gpu"]:
    """Where JPEGs are decoded: "gpu" (nvJPEG) needs a CUDA device.

    auto is "cpu" for now: worker processes decode, which also handles every format.
    """
    if decode == "gpu" and device.type != "cuda":
        from artsearch.errors import BackboneError

        raise BackboneError("--decode gpu needs a CUDA device; use --decode cpu here")
    return "gpu" if decode == "gpu" else "cpu"


def default_batch_size(device: torch.device) -> int:
    """Large batches feed a GPU; on a CPU, small ones keep activations in cache.

    Measured on the 2-core dev machine (EfficientNet-Lite0, bf16, model only): batch 12 gave
    230 images/s, 8 gave 215, 32 gave 169 and 128 gave 121.
    """
    return 128 if device.type == "cuda" else 12


def default_workers(device: torch.device) -> int:
    """Decoding processes: on a GPU host, enough to feed it; on CPU, one per core.

    Measured on the 2-core dev machine (benchmarks/bench_index.py): 2 workers beat 1, since
    decoding overlaps the model's own threads; fewer than 2 starves the model.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    if device.type == "cuda":
        return min(16, max(2, cores - 1))
    return min(cores, 4) if cores > 1 else 0
