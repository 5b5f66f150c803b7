"""Classification: probe and fine-tune train, calibrate, evaluate, and predict honestly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from artsearch.classify import (
    ModelError,
    TrainOptions,
    ece,
    fit_temperature,
    load_model,
    nll,
    softmax,
    stratified_split,
    train,
)
from artsearch.cli import cli
from artsearch.index import ArtIndex
from tests.browser import images_that_failed, open_page, screenshot
from tests.helpers import TRAINABLE, palettes_index


def test_split_is_stratified_disjoint_and_seeded() -> None:
    y = np.repeat(np.arange(4), [5, 10, 20, 3])
    train_, val, test = stratified_split(y, seed=1)
    assert sorted(np.concatenate([train_, val, test]).tolist()) == list(range(len(y)))
    for part in (train_, val, test):
        assert set(y[part]) == {0, 1, 2, 3}  # every class in every part
    assert np.bincount(y[test]).tolist() == [1, 2, 4, 1]
    again = stratified_split(y, seed=1)
    assert all((a == b).all() for a, b in zip((train_, val, test), again, strict=True))
    assert not (stratified_split(y, seed=2)[2] == test).all()


def test_temperature_scaling_repairs_overconfidence() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    logits = rng.standard_normal((2000, 3))
    logits[np.arange(2000), y] += 1.0  # right about 60% of the time ...
    logits *= 4.0  # ... but sure of itself
    t = fit_temperature(logits, y)
    assert 3.0 < t < 5.0
    assert ece(softmax(logits / t), y) < 0.03 < 0.2 < ece(softmax(logits), y)


def test_temperature_never_raises_the_log_loss() -> None:
    # Perfectly separated logits: the NLL keeps falling as T -> 0, the search stops at its
    # bound; whatever it returns must not be worse than T = 1.
    y = np.array([0, 1, 2] * 5)
    logits = np.eye(3)[y] * 2.0
    t = fit_temperature(logits, y)
    assert 0 < t < float("inf")
    assert nll(logits / t, y) <= nll(logits, y)
    # Random labels: calibration can only soften, and never above the untouched log-loss.
    rng = np.random.default_rng(1)
    logits, y = rng.standard_normal((50, 4)) * 3, rng.integers(0, 4, 50)
    t = fit_temperature(logits, y)
    assert nll(logits / t, y) <= nll(logits, y) and t > 1


def test_ece_by_hand() -> None:
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 1, 0, 0])
    # bin 0.9: confidence 0.9, accuracy 0.5; bin 0.6: confidence 0.6, accuracy 1.0
    assert ece(probs, y) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)


def test_no_refit_keeps_the_train_only_probe_calibrated_on_validation(tmp_path: Path
                                                                        ) -> None:
    index = palettes_index(tmp_path)
    result = CliRunner().invoke(cli, ["train", "--index", str(index), "--label", "genre",
                                      "--out", str(tmp_path / "m.pt"), "--no-refit", "--json"])
    assert result.exit_code == 0, result.output
    m = json.loads(result.output)
    assert m["refit"] == {} and m["calibration"]["fitted_on"] == "validation"
    assert m["calibration"]["val_works"] == 4


def test_out_of_fold_logits_come_from_models_that_did_not_see_the_work() -> None:
    """Memorisable data: one-hot features per work and random labels. A probe fitted on all
    works predicts them all (it has seen each); out of fold, a work's feature is one no
    training work had, so its logits are the bias alone and its label cannot be recalled."""
    from artsearch.classify.calibration import out_of_fold_logits, probe_with_c

    rng = np.random.default_rng(0)
    x = np.eye(60, dtype=np.float32)
    y = rng.permutation(np.arange(60) % 3)
    w, b = probe_with_c(x, y, 3, 1e4)
    assert ((x @ w.T + b).argmax(1) == y).all()
    oof = out_of_fold_logits(x, y, 3, 1e4, seed=0)
    # A row's logits cannot depend on its own feature: they are its fold model's bias, so
    # there are at most as many distinct rows as folds.
    assert len(np.unique(oof.round(4), axis=0)) <= 5
    assert (oof.argmax(1) == y).mean() < 0.6


def test_probe_through_the_cli(tmp_path: Path) -> None:
    index = palettes_index(tmp_path)
    model, report = tmp_path / "genre.pt", tmp_path / "report"
    result = CliRunner().invoke(cli, ["train", "--index", str(index), "--label", "genre",
                                      "--out", str(model), "--report", str(report),
                                      "--by", "source", "--json"])
    assert result.exit_code == 0, result.output
    m = json.loads(result.output)
    assert m["test"]["accuracy"] == 1.0 and m["classes"] == ["seascape", "sunset"]
    assert m["works"]["set_aside"] == {"nocturne": 2}
    assert m["works"] | {} == {"train": 16, "val": 4, "test": 4, "unlabelled": 0,
                               "set_aside": {"nocturne": 2}}
    assert m["calibration"]["val_nll_after"] <= m["calibration"]["val_nll_before"]
    assert {p.name for p in report.iterdir()} >= {"index.html", "metrics.json",
                                                  "confusion.svg", "calibration.svg"}
    saved = json.loads((report / "metrics.json").read_text())
    assert [g["value"] for g in saved["by"]["source"]] == ["museum A", "museum B"]
    # C chosen on train, then the probe refitted on train + validation (20 works) and
    # calibrated on their out-of-fold logits; the test split is never touched.
    assert m["refit"]["works"] == 20 and m["calibration"]["fitted_on"] == \
        "out-of-fold train+validation"
    assert m["calibration"]["val_works"] == 20
    page = (report / "index.html").read_text()
    assert "ECE, out of fold" in page
    # 20 calibration works: the curve is flagged as unreadable, its points say how many works
    # they stand on, and the training table says what its numbers are.
    assert "Too few works to read this curve" in page and "it stands on 20 works" in page
    assert "n=" in (report / "calibration.svg").read_text()
    assert "cross-validated log-loss (5 folds; lower is better)" in page
    assert "recall (bar)" in page

    # A new warm picture is a sunset; the model id and the probability come with it.
    Image.new("RGB", (64, 48), (230, 70, 30)).save(tmp_path / "new.png")
    out = CliRunner().invoke(cli, ["classify", str(tmp_path / "new.png"), "--model",
                                   str(model), "--json"])
    assert out.exit_code == 0, out.output
    answer = json.loads(out.output)
    r = answer["results"][0]
    assert r["prediction"] == "sunset" and r["probability"] > 0.5
    assert [t["label"] for t in r["top"]] == ["sunset", "seascape"]
    assert sum(t["probability"] for t in r["top"]) == pytest.approx(1.0, abs=1e-3)
    # Below the threshold it says so instead of forcing a label.
    Image.new("RGB", (64, 48), (115, 70, 110)).save(tmp_path / "between.png")

    def between(threshold: float) -> dict:
        out = CliRunner().invoke(cli, ["classify", str(tmp_path / "between.png"), "--model",
                                       str(model), "--threshold", str(threshold), "--json"])
        return json.loads(out.output)["results"][0]

    p = between(0.5)["probability"]
    assert p < 0.999
    assert between(p + 0.0005)["prediction"] == "uncertain"
    assert between(p - 0.0005)["prediction"] in ("sunset", "seascape")


def test_write_stores_predictions_beside_never_over_the_catalogue(tmp_path: Path) -> None:
    index = palettes_index(tmp_path, extra_rows="")
    model = tmp_path / "genre.pt"
    with ArtIndex(index) as idx:
        train(idx, TrainOptions(label="genre"), model)
    runner = CliRunner()
    image = tmp_path / "coll" / "warm_00.png"
    bad = runner.invoke(cli, ["classify", str(image), "--model", str(model), "--index",
                              str(index), "--write", "genre"])
    assert bad.exit_code == 2 and "genre_predicted" in bad.output
    done = runner.invoke(cli, ["classify", str(image), str(tmp_path / "coll" / "cool_01.png"),
                               "--model", str(model), "--index", str(index), "--write",
                               "genre_predicted"])
    assert done.exit_code == 0, done.output
    assert "wrote genre_predicted for 2 works" in done.output
    from sqlalchemy import select

    from artsearch.index.store import Artwork
    with ArtIndex(index) as idx, idx.store.session() as s:
        art = s.scalar(select(Artwork).where(Artwork.path == "warm_00.png"))
        assert art.genre == "sunset"  # the catalogue is untouched
        assert art.extra["genre_predicted"] == "sunset"
        assert 0.5 < art.extra["genre_predicted_probability"] <= 1.0
        assert art.extra["genre_predicted_model"] == load_model(model).id
        # A catalogued column of that name is kept, not overwritten.
        other = s.scalar(select(Artwork).where(Artwork.path == "cool_03.png"))
        other.extra = {"genre_predicted": "from the catalogue"}
        s.commit()
    again = runner.invoke(cli, ["classify", str(tmp_path / "coll" / "cool_03.png"), "--model",
                                str(model), "--index", str(index), "--write",
                                "genre_predicted"])
    assert "kept 1 catalogued values" in again.output
    with ArtIndex(index) as idx, idx.store.session() as s:
        other = s.scalar(select(Artwork).where(Artwork.path == "cool_03.png"))
        assert other.extra == {"genre_predicted": "from the catalogue"}


def test_a_model_refuses_other_backbone_weights(tmp_path: Path) -> None:
    import torch

    index = palettes_index(tmp_path)
    model = tmp_path / "genre.pt"
    with ArtIndex(index) as idx:
        train(idx, TrainOptions(label="genre"), model)
    saved = torch.load(model, weights_only=True)
    saved["weights_sha256"] = "0" * 64
    torch.save(saved, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="trained on fake-colour weights 000000000000"):
        load_model(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    result = CliRunner().invoke(cli, ["classify", str(tmp_path / "coll" / "warm_00.png"),
                                      "--model", str(tmp_path / "junk.pt")])
    assert result.exit_code == 1 and "not an artsearch model file" in result.output
    # A model cannot write into a space made by another backbone.
    other_index = palettes_index(tmp_path / "b", backbone=TRAINABLE)
    result = CliRunner().invoke(cli, ["classify", str(tmp_path / "coll" / "warm_00.png"),
                                      "--model", str(model), "--index", str(other_index),
                                      "--write", "genre_predicted"])
    assert result.exit_code == 1 and "was trained on fake-colour" in result.output


def test_finetune_trains_the_unfrozen_layers_and_reloads_exactly(tmp_path: Path) -> None:
    index = palettes_index(tmp_path, backbone=TRAINABLE)
    model = tmp_path / "ft.pt"
    lines: list[str] = []
    with ArtIndex(index) as idx:
        result = train(idx, TrainOptions(label="genre", method="finetune", epochs=3, lr=1e-3,
                                         batch_size=8, num_workers=0), model,
                       progress=lines.append)
    m = result.metrics
    assert [r["epoch"] for r in m["history"]][:1] == [1] and len(m["history"]) <= 3
    assert any(line.startswith("epoch 1/3  loss") and "val accuracy" in line for line in lines)
    assert m["finetune"]["freeze_until"] == "conv1"
    assert m["finetune"]["trained_parameters"] == 16 * 8 * 9 + 16  # conv2 only
    clf = load_model(model)
    assert set(clf.model["trunk_state"]) == {"conv2.weight", "conv2.bias"}
    # The saved model gives the same calibrated probabilities as training measured.
    from artsearch.images import decode_image, read_file
    test_paths = [tmp_path / "coll" / result.data.paths[i] for i in result.split["test"]]
    images = [decode_image(read_file(p))[0] for p in test_paths]
    assert np.allclose(clf.probabilities(images), result.test_probs, atol=1e-4)
    # The frozen layer is the pretrained one; the trained one moved.
    import torch
    fresh = torch.load(model, weights_only=True)["trunk_state"]["conv2.weight"]
    start = clf.spec.build(clf.spec, ("conv2",)).conv2.weight  # the fake's fixed start
    assert not torch.allclose(fresh, start)


def test_train_refuses_what_it_cannot_learn(tmp_path: Path) -> None:
    index = palettes_index(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--index", str(index), "--label", "artist"])
    assert result.exit_code == 1 and "no work in space 'content' has a 'artist' value" in \
        result.output
    result = runner.invoke(cli, ["train", "--index", str(index), "--label", "genre",
                                 "--min-per-class", "13"])
    assert result.exit_code == 1 and "lower --min-per-class" in result.output


@pytest.mark.browser
def test_evaluation_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    index = palettes_index(tmp_path)
    report = tmp_path / "report"
    result = CliRunner().invoke(cli, ["train", "--index", str(index), "--label", "genre",
                                      "--out", str(tmp_path / "m.pt"), "--report", str(report),
                                      "--by", "source"])
    assert result.exit_code == 0, result.output
    with open_page(report / "index.html") as (page, log):
        assert page.evaluate("document.images.length") >= 2  # confusion + calibration
        assert images_that_failed(page) == []
        assert page.locator("#by-source table tr").count() == 3
        assert log == {"console": [], "errors": [], "outside": []}
        assert screenshot(page, "classify-report.png").stat().st_size > 10_000


def test_finetune_says_which_works_went_missing(tmp_path: Path) -> None:
    index = palettes_index(tmp_path, backbone=TRAINABLE)
    (tmp_path / "coll" / "warm_04.png").unlink()
    result = CliRunner().invoke(cli, ["train", "--index", str(index), "--label", "genre",
                                      "--method", "finetune", "--epochs", "1"])
    assert result.exit_code == 1
    assert "1 labelled works are no longer in the collection" in result.output
    assert "warm_04.png" in result.output and "--prune" in result.output


def test_unlabelled_works_get_predictions(tmp_path: Path) -> None:
    index = palettes_index(tmp_path, extra_rows="warm_02.png,,museum A\n")
    model = tmp_path / "genre.pt"
    with ArtIndex(index) as idx:
        train(idx, TrainOptions(label="genre"), model)
    result = CliRunner().invoke(cli, ["classify", "--unlabelled", "--model", str(model),
                                      "--index", str(index), "--write", "genre_predicted"])
    assert result.exit_code == 0, result.output
    assert "1 indexed works have no genre" in result.output
    assert "wrote genre_predicted for 1 works" in result.output
    from sqlalchemy import select

    from artsearch.index.store import Artwork
    with ArtIndex(index) as idx, idx.store.session() as s:
        art = s.scalar(select(Artwork).where(Artwork.path == "warm_02.png"))
        assert art.genre is None and art.extra["genre_predicted"] == "sunset"
    result = CliRunner().invoke(cli, ["classify", "--model", str(model)])
    assert result.exit_code == 2 and "--unlabelled" in result.output


def test_the_confusion_matrix_leaves_only_the_room_its_labels_need() -> None:
    from artsearch.reports.classify import _confusion_svg

    def height(names: list[str]) -> int:
        svg = _confusion_svg(np.eye(len(names), dtype=int), names)
        return int(svg.split("height='")[1].split("'")[0])

    short, long_ = height(["a", "b"]), height(["a" * 24, "b" * 24])
    # Two 44-px rows under a margin as deep as the labels (a fixed 150-px one made 258).
    assert short <= 140 < 250 <= long_
