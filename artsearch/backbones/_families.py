"""Backbone families made on demand: `timm:ARCH` and `open_clip:ARCH[/TAG]`.

A family name is turned into a spec only when used, which imports its library (timm or
open_clip) at that point. Weights come from `--weights PATH`, or from the library's hub cache
where an earlier download left them; a download happens only with `--allow-download`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from artsearch.backbones._registry import (
    BackboneSpec,
    Family,
    Preprocess,
    WeightsSource,
    downloads_allowed,
    register_family,
)
from artsearch.errors import BackboneError, WeightsError

if TYPE_CHECKING:
    import torch

OPEN_CLIP_CONFIGS = "ARTSEARCH_OPEN_CLIP_CONFIGS"  # extra open_clip model configs (file/folder)


def _triple(values: Any) -> tuple[float, float, float]:
    """A model config's mean or std as the three floats Preprocess takes."""
    a, b, c = (float(v) for v in values)
    return a, b, c


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Keep huggingface_hub from reaching the network unless downloads are allowed."""
    if downloads_allowed():
        yield
        return
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def _hf_cached(repo: str, filenames: list[str], what: str, hint: str) -> Path:
    """A file of a Hugging Face repo from the local cache, or downloaded when allowed."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    for name in filenames:
        found = try_to_load_from_cache(repo, name)
        if isinstance(found, str):
            return Path(found)
    if not downloads_allowed():
        raise WeightsError(f"no {what} weights on this machine: pass --weights PATH ({hint}), "
                           f"or --allow-download to fetch them from huggingface.co/{repo}")
    last: Exception | None = None
    for name in filenames:
        try:
            return Path(hf_hub_download(repo, name))
        except Exception as e:  # noqa: BLE001 - try the next file name the repo may use
            last = e
    raise WeightsError(f"could not download {what} weights from huggingface.co/{repo}: {last}")


def load_checkpoint_file(path: Path) -> dict[str, Any]:
    """A state dict from .safetensors or a torch.save file (weights only)."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state if isinstance(state, dict) else {}


# -- timm ---------------------------------------------------------------------------------------

def _timm_spec(arch: str) -> BackboneSpec:
    import timm
    import torch

    if arch not in timm.list_models() and not timm.is_model(arch):
        raise BackboneError(f"timm has no model {arch!r}; see timm.list_models()")
    with torch.device("meta"):
        model: Any = timm.create_model(arch, pretrained=False)  # its attributes vary by family
    info = list(model.feature_info) if hasattr(model, "feature_info") else []
    layers = {f"stage{i}": int(f["num_chs"]) for i, f in enumerate(info)}
    layers["final"] = int(model.num_features)
    cfg = model.pretrained_cfg or {}
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    crop = float(cfg.get("crop_pct", 0.875) or 0.875)
    interp: Literal["bicubic", "bilinear"] = \
        "bilinear" if cfg.get("interpolation") == "bilinear" else "bicubic"
    hub = cfg.get("hf_hub_id")
    n = len(info)

    def locate() -> Path:
        if not hub:
            raise WeightsError(f"timm:{arch} has no published weights; pass --weights PATH")
        return _hf_cached(hub, ["model.safetensors", "pytorch_model.bin"], f"timm {arch}",
                          f"a state dict of timm's {arch}")

    return BackboneSpec(
        name=f"timm:{arch}",
        architecture=arch,
        description=f"timm {arch}" + (f" ({cfg.get('tag')})" if cfg.get("tag") else ""),
        weights=WeightsSource(description=f"timm's {hub or arch} weights (or --weights PATH)",
                              locate=locate, sha256=None),
        preprocess=Preprocess(size=size, resize=round(size / crop), interpolation=interp,
                              mean=_triple(cfg.get("mean", (0.485, 0.456, 0.406))),
                              std=_triple(cfg.get("std", (0.229, 0.224, 0.225)))),
        layers=layers,
        default_layer="final",
        style_layers=tuple(f"stage{i}" for i in range(min(n, 3))),
        build=_build_timm,
        accepts_weights=True,
        family="timm",
    )


def _build_timm(spec: BackboneSpec, layers: tuple[str, ...]) -> torch.nn.Module:
    import timm

    from artsearch.backbones._torchvision import load_state_dict
    from artsearch.backbones.taps import TimmTaps

    model = timm.create_model(spec.architecture, pretrained=False)
    path = spec.weights.verified_path()
    assert path is not None
    if path.suffix == ".safetensors":
        result = model.load_state_dict(load_checkpoint_file(path), strict=False)
        if result.missing_keys:
            raise WeightsError(f"{path}: not a timm {spec.architecture} state dict "
                               f"(missing {', '.join(result.missing_keys[:3])})")
    else:
        load_state_dict(path, model, f"timm {spec.architecture}")
    indices = [None if n == "final" else int(n.removeprefix("stage")) for n in layers]
    return TimmTaps(model.eval(), indices).eval()


# -- open_clip ----------------------------------------------------------------------------------

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _open_clip_spec(name: str) -> BackboneSpec:
    try:
        import open_clip
    except ImportError:
        raise BackboneError("open_clip backbones need the clip extra: "
                            "pip install 'artsearch[clip]'") from None
    extra = os.environ.get(OPEN_CLIP_CONFIGS)
    if extra:
        open_clip.add_model_config(extra)
    arch, _, tag = name.partition("/")
    config = open_clip.get_model_config(arch)
    if config is None:
        raise BackboneError(f"open_clip has no architecture {arch!r}; see "
                            f"open_clip.list_models() (or add a config via ${OPEN_CLIP_CONFIGS})")
    pretrained = open_clip.get_pretrained_cfg(arch, tag) if tag else {}
    if tag and not pretrained:
        tags = ", ".join(t for a, t in open_clip.list_pretrained() if a == arch) or "none"
        raise BackboneError(f"open_clip {arch} has no pretrained tag {tag!r}; tags: {tags}")
    image_size = config["vision_cfg"].get("image_size", 224)
    size = int(image_size if isinstance(image_size, int) else image_size[0])

    def locate() -> Path:
        if not tag:
            raise WeightsError(f"open_clip:{arch} names no pretrained tag: pass --weights PATH "
                               f"(an open_clip checkpoint) or use open_clip:{arch}/TAG")
        if pretrained.get("hf_hub"):
            repo, _, filename = pretrained["hf_hub"].partition("/")
            names = [filename] if filename else [
                "open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
            return _hf_cached(repo, names, f"open_clip {name}", "an open_clip checkpoint")
        url = str(pretrained.get("url", ""))
        path: Path = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if path.is_file():
            return path
        if not downloads_allowed():
            raise WeightsError(f"no open_clip {name} weights on this machine: pass --weights "
                               f"PATH, or --allow-download to fetch {url}")
        return Path(str(open_clip.pretrained.download_pretrained(pretrained)))

    return BackboneSpec(
        name=f"open_clip:{name}",
        architecture=arch,
        description=f"open_clip {arch}" + (f" ({tag})" if tag else "") + ": image and text",
        weights=WeightsSource(description=f"open_clip {name} weights (or --weights PATH)",
                              locate=locate, sha256=None),
        preprocess=Preprocess(size=size, resize=size, interpolation="bicubic",
                              mean=_triple(pretrained.get("mean", OPENAI_MEAN)),
                              std=_triple(pretrained.get("std", OPENAI_STD))),
        layers={"final": int(config["embed_dim"])},
        default_layer="final",
        poolings=("avg",),
        text=True,
        build=_build_open_clip,
        accepts_weights=True,
        family="open_clip",
    )


def _build_open_clip(spec: BackboneSpec, layers: tuple[str, ...]) -> torch.nn.Module:
    import open_clip

    from artsearch.backbones.taps import OpenClipImage

    path = spec.weights.verified_path()
    assert path is not None
    with _hub_offline():
        model = open_clip.create_model(spec.architecture, pretrained=None)
        try:
            open_clip.load_checkpoint(model, str(path), strict=True)
        except (RuntimeError, KeyError) as e:
            raise WeightsError(f"{path}: not an open_clip {spec.architecture} checkpoint "
                               f"({str(e).splitlines()[0][:160]})") from e
        tokenizer = open_clip.get_tokenizer(spec.architecture)
    return OpenClipImage(model.eval(), tokenizer).eval()


register_family(Family("timm", "timm:ARCH", _timm_spec,
                       "any timm model, e.g. timm:convnext_tiny (layers stage0.., final)"))
register_family(Family("open_clip", "open_clip:ARCH/TAG", _open_clip_spec,
                       "open_clip image-text models, e.g. open_clip:ViT-B-32/laion2b_s34b_b79k; "
                       "query with --text"))
