"""torchvision's classic ImageNet CNNs, cut at named layers.

Their weights come from a checkpoint the user names (`--weights PATH`, a state dict saved from
the torchvision model), from torch's hub cache where an earlier download left them, or, only
with `--allow-download`, from download.pytorch.org. Nothing is fetched otherwise.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artsearch.backbones._registry import (
    BackboneSpec,
    Preprocess,
    WeightsSource,
    downloads_allowed,
    register,
)
from artsearch.errors import WeightsError

if TYPE_CHECKING:
    import torch

# name -> (ImageNet weights file on download.pytorch.org, {layer: (graph node, channels)},
#          default layer, style layers, resize before the 224 crop)
_VGG16 = {"conv1_1": ("features.1", 64), "conv2_1": ("features.6", 128),
          "conv3_1": ("features.11", 256), "conv4_1": ("features.18", 512),
          "conv4_3": ("features.22", 512), "conv5_1": ("features.25", 512),
          "conv5_3": ("features.29", 512)}
_VGG19 = {"conv1_1": ("features.1", 64), "conv2_1": ("features.6", 128),
          "conv3_1": ("features.11", 256), "conv4_1": ("features.20", 512),
          "conv4_4": ("features.26", 512), "conv5_1": ("features.29", 512),
          "conv5_4": ("features.35", 512)}
_GATYS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
_RESNET_STYLE = ("layer1", "layer2", "layer3")


def _resnet(widths: tuple[int, int, int, int]) -> dict[str, tuple[str, int]]:
    return {f"layer{i}": (f"layer{i}", w) for i, w in enumerate(widths, 1)}


_MODELS: dict[str, tuple[str, dict[str, tuple[str, int]], str, tuple[str, ...], int]] = {
    "resnet18": ("resnet18-f37072fd.pth", _resnet((64, 128, 256, 512)), "layer4",
                 _RESNET_STYLE, 256),
    "resnet50": ("resnet50-11ad3fa6.pth", _resnet((256, 512, 1024, 2048)), "layer4",
                 _RESNET_STYLE, 232),
    "vgg16": ("vgg16-397923af.pth", _VGG16, "conv5_3", _GATYS, 256),
    "vgg19": ("vgg19-dcbb9e9d.pth", _VGG19, "conv5_4", _GATYS, 256),
    "efficientnet_b0": (
        "efficientnet_b0_rwightman-7f5810bc.pth",
        {**{f"stage{i}": (f"features.{i}", w) for i, w in
            enumerate((16, 24, 40, 80, 112, 192, 320), 1)}, "final": ("features.8", 1280)},
        "final", ("stage2", "stage3", "stage4", "stage5"), 256),
    "convnext_tiny": (
        "convnext_tiny-983f1562.pth",
        {f"stage{i}": (f"features.{2 * i - 1}", w) for i, w in
         enumerate((96, 192, 384, 768), 1)},
        "stage4", ("stage1", "stage2", "stage3"), 236),
}


def _hub_file(filename: str) -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _locate(arch: str, filename: str) -> Path:
    path = _hub_file(filename)
    if path.is_file():
        return path
    url = f"https://download.pytorch.org/models/{filename}"
    if not downloads_allowed():
        raise WeightsError(
            f"no {arch} weights on this machine: pass --weights PATH (a state dict saved from "
            f"torchvision.models.{arch}), or --allow-download to fetch {url}")
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    # torchvision's file names end in the first hex digits of the file's SHA-256.
    torch.hub.download_url_to_file(url, str(path), hash_prefix=filename.rsplit("-")[-1][:-4])
    return path


def load_state_dict(path: Path, model: torch.nn.Module, what: str) -> None:
    """Load a checkpoint into `model`, unwrapping the usual containers; refuse partial fits."""
    import torch

    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}); "
                           f"give a state dict saved with torch.save") from e
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        missing = ", ".join(result.missing_keys[:3]) or "none"
        extra = ", ".join(result.unexpected_keys[:3]) or "none"
        raise WeightsError(f"{path}: not a {what} state dict (missing {missing}; "
                           f"unexpected {extra}); save it from the same architecture")


def _build(spec: BackboneSpec, layers: tuple[str, ...]) -> torch.nn.Module:
    import torchvision

    from artsearch.backbones.taps import GraphTaps

    model = torchvision.models.get_model(spec.architecture, weights=None)
    path = spec.weights.verified_path()
    assert path is not None
    load_state_dict(path, model, f"torchvision {spec.architecture}")
    nodes = spec.extra["nodes"]
    return GraphTaps(model.eval(), [nodes[n] for n in layers]).eval()


def _register() -> None:
    for arch, (filename, layers, default, style, resize) in _MODELS.items():
        register(BackboneSpec(
            name=arch,
            architecture=arch,
            description=f"torchvision {arch}, ImageNet-1k (weights: --weights PATH or hub cache)",
            weights=WeightsSource(
                description=f"torchvision's {filename} (or --weights PATH)",
                locate=functools.partial(_locate, arch, filename),
                sha256=None,
            ),
            preprocess=Preprocess(size=224, resize=resize, interpolation="bilinear"),
            layers={name: width for name, (_, width) in layers.items()},
            default_layer=default,
            style_layers=style,
            build=_build,
            accepts_weights=True,
            family="torchvision",
            extra={"nodes": {name: node for name, (node, _) in layers.items()}},
        ))


_register()
