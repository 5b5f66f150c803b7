"""Shared fixtures: an isolated ARTSEARCH_HOME, a deterministic fake backbone, test images."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from artsearch import backbones
from artsearch.backbones import BackboneSpec, Preprocess, WeightsSource

DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "art-dev"
FAKE = "fake-colour"


def _build_fake(spec: BackboneSpec, layer: str):  # noqa: ANN202 - torch imported lazily
    import torch

    class ColourGrid(torch.nn.Module):
        """Mean colour of each cell of a 4x4 grid: deterministic; alike for alike pictures."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            grid = torch.nn.functional.adaptive_avg_pool2d(x, 4)  # (N, 3, 4, 4)
            return grid.flatten(1)[:, :, None, None]  # (N, 48, 1, 1)

    return ColourGrid().eval()


@pytest.fixture(scope="session", autouse=True)
def fake_backbone() -> BackboneSpec:
    """A weight-free backbone, registered through the real registry."""
    spec = BackboneSpec(
        name=FAKE, architecture="colour-grid-4x4", description="test fake: 4x4 colour grid",
        weights=WeightsSource("no weights"), preprocess=Preprocess(size=32, resize=32,
                                                                   mean=(0.5,) * 3, std=(0.5,) * 3),
        layers={"grid": 48}, default_layer="grid", build=_build_fake)
    backbones.register(spec, replace=True)
    return spec


TRAINABLE = "fake-conv"


def _build_conv(spec: BackboneSpec, layers: tuple[str, ...]):  # noqa: ANN202
    import torch

    class TwoConvs(torch.nn.Module):
        """Two seeded convolutions: a backbone with weights to fine-tune, in milliseconds."""

        def __init__(self) -> None:
            super().__init__()
            gen = torch.Generator().manual_seed(0)
            self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
            with torch.no_grad():
                for p in self.parameters():
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.3)

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            one = torch.relu(self.conv1(x))
            two = torch.relu(self.conv2(one))
            return [{"conv1": one, "conv2": two}[n] for n in layers]

    return TwoConvs().eval()


@pytest.fixture(scope="session", autouse=True)
def trainable_backbone() -> BackboneSpec:
    """A tiny convolutional backbone with fixed random weights, for fine-tuning tests."""
    spec = BackboneSpec(
        name=TRAINABLE, architecture="two-convs", description="test fake: two convolutions",
        weights=WeightsSource("no weights"), preprocess=Preprocess(size=32, resize=36,
                                                                   mean=(0.5,) * 3, std=(0.5,) * 3),
        layers={"conv1": 8, "conv2": 16}, default_layer="conv2", build=_build_conv)
    backbones.register(spec, replace=True)
    return spec


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own ARTSEARCH_HOME, so none touches a real index."""
    home = tmp_path / "artsearch-home"
    monkeypatch.setenv("ARTSEARCH_HOME", str(home))
    return home


def painting(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A synthetic 'painting': a coloured ground with a few seeded shapes."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        x1, y1 = x0 + rng.randrange(10, 50), y0 + rng.randrange(10, 40)
        draw.ellipse((x0, y0, x1, y1), fill=tuple(rng.randrange(256) for _ in range(3)))
    return img


def make_collection(root: Path, n: int = 12, start: int = 0) -> list[Path]:
    """n distinct JPEGs under root/a and root/b."""
    paths = []
    for i in range(start, start + n):
        path = root / ("a" if i % 2 else "b") / f"work_{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        painting(i).save(path, quality=92)
        paths.append(path)
    return paths


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    root = tmp_path / "collection"
    make_collection(root)
    return root


def requires_dev() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not (DEV / "metadata.csv").exists(),
                              reason="shared dev collection ../shared/data/art-dev not present")


def stored_vectors(index_path: Path, space: str = "content") -> dict:  # type: ignore[type-arg]
    """Path -> stored vector of every work in a space, read through the index's own store."""
    from artsearch.cluster import space_matrix
    from artsearch.index import ArtIndex
    from artsearch.index.catalogue import artworks

    with ArtIndex(index_path) as idx:
        ids, vectors = space_matrix(idx, space)
        paths = {a.id: a.path for a in artworks(idx, ids)}
    return {paths[i]: v for i, v in zip(ids, vectors, strict=True)}
