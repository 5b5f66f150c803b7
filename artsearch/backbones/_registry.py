"""The registry's data types and the name → spec table."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

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

    `locate` returns the file or raises `WeightsError` saying how to install it; it never
    downloads. A spec with no weights (random or weight-free models) has `sha256 = "none"`.
    """

    description: str
    locate: Callable[[], Path] | None = None
    sha256: str = "none"

    def verified_path(self) -> Path | None:
        """The weights file after its checksum is confirmed, or None for weight-free specs."""
        if self.locate is None:
            return None
        path = self.locate()
        actual = sha256_file(path)
        if actual != self.sha256:
            raise WeightsError(
                f"{path}: SHA-256 is {actual[:16]}…, expected {self.sha256[:16]}…; "
                f"the file is damaged or a different release: reinstall {self.description}"
            )
        return path


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: everything needed to rebuild the same feature space later.

    `layers` maps each named output layer to its channel count. `build(spec, layer)` returns a
    torch module taking a normalised batch (N, 3, size, size) to a feature map (N, C, H, W).
    """

    name: str
    architecture: str
    weights: WeightsSource
    preprocess: Preprocess
    layers: dict[str, int]
    default_layer: str
    build: Callable[[BackboneSpec, str], torch.nn.Module]
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def dims(self, layer: str | None = None) -> int:
        return self.layers[self.check_layer(layer)]

    def check_layer(self, layer: str | None) -> str:
        layer = layer or self.default_layer
        if layer not in self.layers:
            raise BackboneError(
                f"backbone {self.name!r} has no layer {layer!r}; choose one of: "
                + ", ".join(self.layers)
            )
        return layer


_REGISTRY: dict[str, BackboneSpec] = {}
_HASH_CACHE: dict[tuple[str, int, float], str] = {}


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
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BackboneError(
            f"unknown backbone {name!r}; registered: {', '.join(sorted(_REGISTRY))}"
        ) from None


def available() -> list[BackboneSpec]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) for the life of the process."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime)
    if key not in _HASH_CACHE:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        _HASH_CACHE[key] = digest.hexdigest()
    return _HASH_CACHE[key]
