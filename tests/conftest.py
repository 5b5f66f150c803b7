"""Shared fixtures: an isolated ARTSEARCH_HOME, a deterministic fake backbone, test images."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from artsearch import backbones
from artsearch.backbones import BackboneSpec, Preprocess, WeightsSource
from artsearch.backbones._families import OPEN_CLIP_CONFIGS
from tests.helpers import FAKE, TRAINABLE, Raw, index_into, make_collection, serving


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


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    root = tmp_path / "collection"
    make_collection(root)
    return root


HOSTILE = ['<script>alert(1)</script>', '"><img src=x onerror=alert(2)>',
           'javascript:alert(3)']


@pytest.fixture
def served(tmp_path: Path) -> tuple[Path, Path]:
    """(collection, index): 12 works with artists, genres and dates (three with hostile
    titles), in two spaces (content: avg; tone: max)."""
    root = tmp_path / "coll"
    paths = make_collection(root, 12)
    meta = root / "meta.csv"
    rows = ["path,title,artist,genre,date,license"]
    for i, p in enumerate(paths):
        title = HOSTILE[i] if i < 3 else f"Study {i}"
        rows.append(f'{p.relative_to(root).as_posix()},"{title.replace(chr(34), chr(34) * 2)}",'
                    f'{"Ann" if i % 2 else "Bo"},{"landscape" if i % 3 else "portrait"},'
                    f"{1650 + 100 * (i % 2)},CC0 1.0")
    meta.write_text("\n".join(rows) + "\n")
    index_into(root, tmp_path / "idx", metadata=meta)
    index_into(root, tmp_path / "idx", space="tone", pooling="max")
    return root, tmp_path / "idx"


@pytest.fixture
def live_server(served: tuple[Path, Path]) -> Iterator[str]:
    with serving(served[1]) as url:
        yield url


TINY = {"embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                       "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                     "layers": 1}}


@pytest.fixture
def tiny_clip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A random-weight open_clip model of a tiny architecture, saved as a local checkpoint."""
    import open_clip

    configs = tmp_path / "clip-configs"
    configs.mkdir()
    (configs / "artsearch-tiny.json").write_text(json.dumps(TINY))
    monkeypatch.setenv(OPEN_CLIP_CONFIGS, str(configs))
    open_clip.add_model_config(configs)
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny-clip.pt"
    torch.save(open_clip.create_model("artsearch-tiny", pretrained=None).state_dict(), ckpt)
    return ckpt


@pytest.fixture
def raw() -> Iterator[Raw]:
    server = Raw()
    yield server
    server.close()
