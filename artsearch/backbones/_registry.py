"""The registry's data types and the name → spec table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from artsearch.digest import sha256_file_cached
from artsearch.errors import BackboneError, WeightsError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Preprocess:
    """How pixels become the tensor a backbone expects.

    The shorter side is resized to `resize`, then a centred `size` x `size` crop is taken.
    Pixels are scaled to [0, `scale`], reordered to `channel_order`, then normalised with
    `mean` and `std` (given in the scaled range and in `channel_order`).
    """

    size: int = 224
    resize: int = 224
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    scale: float = 1.0
    channel_order: Literal["RGB", "BGR"] = "RGB"

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "resize": self.resize,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
            "scale": self.scale,
            "channel_order": self.channel_order,
        }


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's weights live on this machine, and the SHA-256 they must have.

    `locate` returns the file or raises `WeightsError` saying how to get it; it downloads only
    where the user allowed it (`allow_downloads`). `sha256` pins a known release; None accepts
    whatever file `locate` finds (a user's checkpoint, a hub cache file) and records its
    checksum in the space, so later queries can tell if it changed. A spec with no weights
    (weight-free fakes) has no `locate`.
    """

    description: str
    locate: Callable[[], Path] | None = None
    sha256: str | None = "none"
    path: Path | None = None  # a user-given checkpoint (--weights), recorded in the space

    @classmethod
    def from_file(cls, path: Path) -> WeightsSource:
        path = path.expanduser().resolve()

        def locate() -> Path:
            if not path.is_file():
                raise WeightsError(f"{path}: checkpoint not found; check the --weights path")
            return path

        return cls(description=f"checkpoint {path}", locate=locate, sha256=None, path=path)

    def verified_path(self) -> Path | None:
        """The weights file after its checksum is confirmed, or None for weight-free specs."""
        if self.locate is None:
            return None
        path = self.locate()
        if self.sha256 is not None:
            actual = sha256_file_cached(path)
            if actual != self.sha256:
                raise WeightsError(
                    f"{path}: SHA-256 is {actual[:16]}…, expected {self.sha256[:16]}…; "
                    f"the file is damaged or a different release: reinstall {self.description}"
                )
        return path

    def checksum(self) -> str:
        """The SHA-256 of the weights this source resolves to now ("none" without weights)."""
        path = self.verified_path()
        return "none" if path is None else sha256_file_cached(path)

    def available(self) -> tuple[bool, str]:
        """Whether the weights are on this machine now, and where (or why not); no hashing."""
        if self.locate is None:
            return True, "no weights needed"
        try:
            return True, str(self.locate())
        except WeightsError as e:
            return False, str(e)


_DOWNLOADS = {"allowed": False}


def allow_downloads(allowed: bool = True) -> None:
    """Let weight locators fetch from their library's hub (off unless the user asks)."""
    _DOWNLOADS["allowed"] = allowed


def downloads_allowed() -> bool:
    return _DOWNLOADS["allowed"]


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: everything needed to rebuild the same feature space later.

    `layers` maps each named output layer to its channel count. `build(spec, layers)` returns
    a torch module taking a normalised batch (N, 3, size, size) to one feature map
    (N, C, H, W) per requested layer (a list; a bare tensor is accepted for one layer).
    `style_layers` are the layers a style pooling (gram, meanstd) uses when none are named.
    `poolings` limits the poolings that make sense (None: all). `text` marks joint
    image-text models, whose built module also has `embed_text(list[str])`.
    """

    name: str
    architecture: str
    weights: WeightsSource
    preprocess: Preprocess
    layers: dict[str, int]
    default_layer: str
    build: Callable[[BackboneSpec, tuple[str, ...]], torch.nn.Module]
    description: str = ""
    style_layers: tuple[str, ...] = ()
    poolings: tuple[str, ...] | None = None
    text: bool = False
    accepts_weights: bool = False  # whether --weights PATH may replace the default source
    family: str = "built-in"
    default_pooling: str = "avg"  # a new space's pooling when --pooling is not given
    # Each layer's share of a multi-layer vector's cosine (a layer not named: 1). The
    # cosine of two vectors is the shares' weighted mean of the layers' own cosines.
    layer_shares: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def shares(self, layers: tuple[str, ...]) -> tuple[float, ...] | None:
        """`layers`' shares of the cosine, in order; None where every share is equal."""
        found = tuple(self.layer_shares.get(n, 1.0) for n in layers)
        return None if len(set(found)) <= 1 else found

    def check_layer(self, layer: str | None) -> str:
        layer = layer or self.default_layer
        if layer not in self.layers:
            raise BackboneError(
                f"backbone {self.name!r} has no layer {layer!r}; choose one of: "
                + ", ".join(self.layers)
            )
        return layer

    def parse_layers(self, layer: str | None, pooling: str = "avg") -> tuple[str, ...]:
        """`--layer` text ("final", "stage5,final") as layer names; style poolings default
        to `style_layers`."""
        if self.poolings is not None and pooling not in self.poolings:
            raise BackboneError(
                f"backbone {self.name!r} gives vectors, not feature maps: use --pooling "
                + " or ".join(self.poolings))
        if not layer:
            if pooling in ("gram", "meanstd") and self.style_layers:
                return self.style_layers
            return (self.default_layer,)
        names = tuple(part.strip() for part in layer.split(",") if part.strip())
        if len(set(names)) != len(names):
            raise BackboneError(f"--layer {layer!r} names a layer twice")
        return tuple(self.check_layer(n) for n in names) or (self.default_layer,)

    def dims(self, layers: tuple[str, ...] | str | None = None, pooling: str = "avg") -> int:
        from artsearch.pooling import get_pooling

        if not isinstance(layers, tuple):
            layers = self.parse_layers(layers, pooling)
        pool = get_pooling(pooling)
        return sum(pool.dims(self.layers[n]) for n in layers)

    def at_size(self, size: int) -> BackboneSpec:
        """This backbone reading `size` x `size` pictures (shorter side resized to it) instead
        of its default; convolutional backbones only (a transformer's input is fixed)."""
        if size == self.preprocess.size:
            return self
        if self.family == "open_clip" or size < 32 or size > 1024:
            raise BackboneError(
                f"--input-size {size}: " + ("open_clip models read a fixed size"
                                            if self.family == "open_clip"
                                            else "choose between 32 and 1024 pixels"))
        # Keep the default's resize margin (resize/size, e.g. 256/224 for torchvision).
        resize = round(size * self.preprocess.resize / self.preprocess.size)
        return replace(self, preprocess=replace(self.preprocess, size=size, resize=resize))

    def with_weights(self, path: Path) -> BackboneSpec:
        """This backbone with a user's checkpoint in place of its default weights."""
        if not self.accepts_weights:
            raise BackboneError(
                f"backbone {self.name!r} has fixed, packaged weights; --weights is for "
                "EfficientNet-Lite (tuned stages), torchvision, timm and open_clip backbones")
        return replace(self, weights=WeightsSource.from_file(path))


_REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec, *, replace: bool = False) -> BackboneSpec:
    """Add a backbone. Tests register fakes this way; plugins may too."""
    if spec.name in _REGISTRY and not replace:
        raise BackboneError(f"backbone {spec.name!r} is already registered")
    if spec.default_layer not in spec.layers:
        raise BackboneError(f"backbone {spec.name!r}: default layer not among its layers")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def get(name: str) -> BackboneSpec:
    """A backbone by its full name, fixed (`efficientnet-lite0`) or from a family
    (`timm:ARCH`, `open_clip:ARCH/TAG`); see `resolve` to give it other weights."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    prefix, sep, rest = name.partition(":")
    family = _FAMILIES.get(prefix) if sep else None
    if family is None:
        raise BackboneError(
            f"unknown backbone {name!r}; registered: {', '.join(sorted(_REGISTRY))}; "
            f"families: {', '.join(f.pattern for f in _FAMILIES.values())} "
            "(`artsearch backbones` lists them)"
        )
    if not rest:
        raise BackboneError(f"backbone {name!r}: write it as {family.pattern}")
    if name not in _FAMILY_CACHE:
        _FAMILY_CACHE[name] = family.make(rest)
    return _FAMILY_CACHE[name]


def resolve(name: str, weights: Path | str | None = None) -> BackboneSpec:
    """The named backbone, with a user's checkpoint file when `weights` is given."""
    spec = get(name)
    return spec.with_weights(Path(weights)) if weights else spec


@dataclass(frozen=True)
class Family:
    """Backbones made on demand from a library's catalogue, e.g. `timm:convnext_tiny`."""

    prefix: str
    pattern: str  # how a name is written, for help and errors
    make: Callable[[str], BackboneSpec]
    description: str


_FAMILIES: dict[str, Family] = {}
_FAMILY_CACHE: dict[str, BackboneSpec] = {}


def register_family(family: Family) -> None:
    _FAMILIES[family.prefix] = family


def families() -> list[Family]:
    return list(_FAMILIES.values())


def available() -> list[BackboneSpec]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


