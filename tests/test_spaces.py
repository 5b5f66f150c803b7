"""Several spaces per index: content and style side by side, blended, and open_clip text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sqlalchemy import select

from artsearch import backbones
from artsearch.cli import cli
from artsearch.errors import IndexMismatchError, MetadataError
from artsearch.index import ArtIndex
from artsearch.index.store import Embedding
from artsearch.indexer import IndexOptions, index_collection
from artsearch.query import default_extractor, parse_mix, search
from tests.helpers import FAKE, make_collection, painting

STYLE = IndexOptions(space="style", backbone="efficientnet-lite0", pooling="gram",
                     extractor={"num_workers": 0})


@pytest.fixture
def two_spaces(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "coll"
    make_collection(root, 16)
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        index_collection(root, idx, IndexOptions(backbone=FAKE, extractor={"num_workers": 0}))
        report = index_collection(root, idx, STYLE)
    assert report.embedded == 16
    return root, tmp_path / "idx"


def test_a_style_space_records_what_made_it(two_spaces: tuple[Path, Path]) -> None:
    root, idx_dir = two_spaces
    with ArtIndex(idx_dir) as idx:
        style = idx.space("style")
        lite0 = backbones.get("efficientnet-lite0")
        assert style.layer == ",".join(lite0.style_layers) and style.pooling == "gram"
        assert style.dims == 3 * 512 and style.weights_sha256 == lite0.weights.sha256
        params = idx.pooling_params(style)
        assert params is not None and {"u0", "v2", "m0", "m2"} <= set(params)
        assert (idx_dir / "style.pooling.npz").is_file()
        # A re-run that names only the space keeps its backbone, layers and pooling.
        again = index_collection(root, idx, IndexOptions(space="style",
                                                         extractor={"num_workers": 0}))
        assert again.embedded == 0 and again.unchanged == 16
        with pytest.raises(IndexMismatchError, match="built with efficientnet-lite0 .*gram"):
            index_collection(root, idx, IndexOptions(space="style", pooling="avg"))


def test_a_new_image_embeds_exactly_as_indexing_did(two_spaces: tuple[Path, Path]) -> None:
    root, idx_dir = two_spaces
    with ArtIndex(idx_dir) as idx:
        sp = idx.space("style")
        with idx.store.session() as s:
            emb = s.scalar(select(Embedding).where(Embedding.space_id == sp.id).limit(1))
            path = root / emb.artwork.path
        stored = idx.vectors(sp).reconstruct(emb.faiss_id)
        from artsearch.images import decode_image, read_file

        img, _ = decode_image(read_file(path))
        fresh = default_extractor(idx, sp).embed_images([img])[0]
    assert float(stored @ fresh) > 0.999


def test_content_and_style_answer_separately(two_spaces: tuple[Path, Path],
                                             tmp_path: Path) -> None:
    root, idx_dir = two_spaces
    outside = tmp_path / "outside.png"
    painting(3).transpose(0).save(outside)  # a mirrored copy: not in the collection
    with ArtIndex(idx_dir) as idx:
        content = search(idx, image=outside, space="content", k=16)
        style = search(idx, image=outside, space="style", k=16)
    assert content.query["indexed"] is False and style.query["indexed"] is False
    assert style.hits[0].path.endswith("work_003.jpg")  # the same paint, whatever the layout
    assert [h.path for h in content.hits] != [h.path for h in style.hits]


def test_blended_scores_are_weighted_z_scores(two_spaces: tuple[Path, Path]) -> None:
    _, idx_dir = two_spaces
    weights = {"content": 0.6, "style": 0.4}
    with ArtIndex(idx_dir) as idx:
        result = search(idx, artwork=3, mix=weights, k=16)
        expected: dict[int, float] = {}
        for name, w in weights.items():
            sp = idx.space(name)
            vec = idx.vectors(sp)
            with idx.store.session() as s:
                rows = list(s.execute(select(Embedding.artwork_id, Embedding.faiss_id).where(
                    Embedding.space_id == sp.id)))
            ids = {a: f for a, f in rows}
            q = vec.reconstruct(ids[3])
            cos = {a: float(vec.reconstruct(f) @ q) for a, f in ids.items()}
            mean, std = np.mean(list(cos.values())), np.std(list(cos.values()))
            for a, c in cos.items():
                expected[a] = expected.get(a, 0.0) + w * (c - mean) / std
    assert result.space == "content=0.6+style=0.4"
    assert [h.id for h in result.hits] == sorted(expected, key=lambda a: -expected[a])
    for hit in result.hits:
        assert hit.score == pytest.approx(expected[hit.id], abs=1e-4)
        assert set(hit.spaces) == {"content", "style"}
    assert result.hits[0].id == 3


def test_mix_needs_two_spaces_and_positive_weights() -> None:
    assert parse_mix("content=0.6, style=0.4") == {"content": 0.6, "style": 0.4}
    for bad in ("content=1", "content=0.5,style=-1", "content=a,style=1", "=1,style=2"):
        with pytest.raises(MetadataError, match="--mix"):
            parse_mix(bad)


def test_a_changed_projection_file_is_refused(two_spaces: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    _, idx_dir = two_spaces
    npz = idx_dir / "style.pooling.npz"
    data = dict(np.load(npz))
    data["m0"] = data["m0"] + 1
    np.savez(npz, **data)
    outside = tmp_path / "q.png"
    painting(99).save(outside)
    with ArtIndex(idx_dir) as idx, pytest.raises(IndexMismatchError, match="projection"):
        search(idx, image=outside, space="style")


def test_changed_weights_are_refused_at_query_time(tmp_path: Path) -> None:
    import torchvision

    root = tmp_path / "coll"
    make_collection(root, 6)
    ckpt = tmp_path / "r18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), ckpt)
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        index_collection(root, idx, IndexOptions(backbone="resnet18", weights=ckpt,
                                                 extractor={"num_workers": 0}))
    torch.manual_seed(1)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), ckpt)
    q = tmp_path / "q.png"
    painting(50).save(q)
    with ArtIndex(tmp_path / "idx") as idx, pytest.raises(
            IndexMismatchError, match="resnet18 weights .* install or pass"):
        search(idx, image=q)


# -- open_clip ----------------------------------------------------------------------------


def test_open_clip_space_answers_text_and_matches_open_clip(tiny_clip: Path,
                                                            tmp_path: Path) -> None:
    import open_clip

    root = tmp_path / "coll"
    make_collection(root, 10)
    runner = CliRunner()
    args = ["index", str(root), "--index", str(tmp_path / "idx"), "--space", "clip",
            "--backbone", "open_clip:artsearch-tiny", "--weights", str(tiny_clip),
            "--workers", "0", "-q"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["query", "--text", "a stormy seascape", "--space", "clip",
                                 "--index", str(tmp_path / "idx"), "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["query"] == {"text": "a stormy seascape"} and len(answer["results"]) == 3

    # The same numbers open_clip itself gives, for text and for images.
    model = open_clip.create_model("artsearch-tiny", pretrained=None)
    open_clip.load_checkpoint(model, str(tiny_clip))
    tokenizer = open_clip.get_tokenizer("artsearch-tiny")
    with torch.no_grad():
        ref_text = torch.nn.functional.normalize(
            model.eval().encode_text(tokenizer(["a stormy seascape"])), dim=1)[0].numpy()
    with ArtIndex(tmp_path / "idx") as idx:
        sp = idx.space("clip")
        ex = default_extractor(idx, sp)
        ex.precision = "fp32"
        ours = ex.embed_texts(["a stormy seascape"])[0]
        img = painting(2, (48, 40))
        mine = ex.embed_images([img])[0]
    np.testing.assert_allclose(ours, ref_text, atol=1e-4)
    _, _, preprocess = open_clip.create_model_and_transforms("artsearch-tiny", pretrained=None)
    with torch.no_grad():
        ref_img = torch.nn.functional.normalize(
            model.encode_image(preprocess(img)[None]), dim=1)[0].numpy()
    assert float(mine @ ref_img) > 0.99  # PIL vs torchvision resampling differ slightly
    scores = [r["score"] for r in answer["results"]]
    assert scores == sorted(scores, reverse=True)


def test_text_queries_need_a_text_model(two_spaces: tuple[Path, Path]) -> None:
    _, idx_dir = two_spaces
    with ArtIndex(idx_dir) as idx, pytest.raises(MetadataError, match="no text encoder"):
        search(idx, text="a stormy seascape", space="style")


def test_open_clip_without_weights_says_how_to_get_them() -> None:
    from artsearch.errors import WeightsError

    spec = backbones.get("open_clip:ViT-B-32/laion2b_s34b_b79k")
    assert spec.text and spec.layers == {"final": 512}
    ok, why = spec.weights.available()
    if ok:
        pytest.skip("this machine has the ViT-B-32 weights in its hub cache")
    assert "--weights PATH" in why and "--allow-download" in why
    with pytest.raises(WeightsError):
        spec.weights.verified_path()


def test_a_space_keeps_the_input_size_it_was_built_at(tmp_path: Path) -> None:
    """--input-size is stored with the space: queries and re-runs read pictures at that size,
    and a re-run asking for another size is refused rather than mixing two kinds of vector."""
    import dataclasses

    from artsearch.cluster import space_matrix
    from artsearch.errors import BackboneError
    from artsearch.extract import Extractor
    from artsearch.images import decode_image, read_file
    from artsearch.index.catalogue import find_artwork

    coll = tmp_path / "coll"
    coll.mkdir()
    make_collection(coll, 6)
    idx_path = tmp_path / "idx"

    def run(*extra: str):  # noqa: ANN202
        return CliRunner().invoke(cli, ["index", str(coll), "--index", str(idx_path),
                                        "--backbone", FAKE, "--workers", "0", "-q", *extra])

    assert run("--input-size", "64").exit_code == 0
    with ArtIndex(idx_path) as idx:
        sp = idx.space("content")
        assert sp.preprocessing["size"] == 64 and idx.spec_for(sp).preprocess.size == 64
        ids, stored = space_matrix(idx, "content")
        path = idx.root / find_artwork(idx, id=ids[0]).path
    img, _ = decode_image(read_file(path), min_side=64)
    at_64 = Extractor(backbones.get(FAKE).at_size(64), num_workers=0).embed_images([img])
    assert np.allclose(at_64[0], stored[0], atol=1e-5)
    assert run().exit_code == 0  # a plain re-run keeps the space's size
    refused = run("--input-size", "96")
    assert refused.exit_code != 0 and "built from 64 px pictures" in refused.output
    with pytest.raises(BackboneError, match="fixed size"):
        dataclasses.replace(backbones.get(FAKE), family="open_clip").at_size(320)


def test_a_cavg_space_fits_its_centre_once_and_queries_with_it(tmp_path: Path) -> None:
    """cavg is avg minus the collection's mean: learnt when the space is created, stored with
    its checksum beside the space, and used unchanged by a later query."""
    coll = tmp_path / "coll"
    coll.mkdir()
    files = make_collection(coll, 8)
    idx_path = tmp_path / "idx"
    args = ["index", str(coll), "--index", str(idx_path), "--backbone", FAKE, "--workers", "0",
            "-q", "--space", "c", "--pooling", "cavg"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    stored = idx_path / "c.pooling.npz"
    with np.load(stored) as data:
        centre = data["m0"]
    assert centre.shape == (48,) and np.abs(centre).sum() > 0
    before = stored.read_bytes()
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert stored.read_bytes() == before  # a re-run keeps the centre it learnt
    # The same pixels as a new file (PNG, so another hash): embedded at query time, centred
    # with the stored mean, it must meet its original at cosine 1; without the centre the
    # raw mean colour would point elsewhere.
    from PIL import Image

    copy = tmp_path / "copy.png"
    Image.open(files[3]).convert("RGB").save(copy)
    with ArtIndex(idx_path) as idx:
        hits = search(idx, image=copy, k=1, space="c").hits
    assert hits[0].path == files[3].relative_to(coll).as_posix()
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
