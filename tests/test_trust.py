"""Trust: typed near-duplicates, explained matches, rights-aware output, citable results."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

from artsearch.cli import cli
from artsearch.duplicates.find import Thresholds, classify, features, geometry
from artsearch.duplicates.fit import derive
from artsearch.explain import pair_maps
from artsearch.extract import Extractor
from artsearch.index import ArtIndex
from artsearch.indexer import IndexOptions, index_collection
from artsearch.rights import licence_class, parse_shown
from tests.browser import images_that_failed, open_page
from tests.helpers import FAKE, TRAINABLE

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "collection"
PAINTINGS = sorted(EXAMPLES.glob("*/*.jpg"))


def picture(n: int) -> Image.Image:
    return Image.open(PAINTINGS[n]).convert("RGB")


def copy_paintings(root: Path, picks: list[int], name: str, licence: object) -> list[str]:
    """Copy example paintings into root as NAME{i}.jpg; their catalogue rows (path,
    licence(i))."""
    root.mkdir(exist_ok=True)
    rows = []
    for i, n in enumerate(picks):
        shutil.copy(PAINTINGS[n], root / f"{name}{i}.jpg")
        rows.append(f"{name}{i}.jpg,{licence(i)}")  # type: ignore[operator]
    return rows


# -- typed duplicates ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def original() -> tuple[Image.Image, object]:
    img = picture(3)
    return img, features(img)


@pytest.mark.parametrize("how", ["exact", "jpeg", "resize", "colour", "mirrored", "crop"])
def test_each_derivation_gets_its_type(original: tuple[Image.Image, object], how: str) -> None:
    img, fa = original
    copy, truth = derive(img, how, np.random.default_rng(5))
    g = geometry(fa, features(copy))  # type: ignore[arg-type]
    assert classify(g, 1.0, Thresholds()) == truth


def test_a_crop_is_boxed_where_it_was_cut(original: tuple[Image.Image, object]) -> None:
    img, fa = original
    w, h = img.size
    box = (w // 4, h // 5, w // 4 + w // 2, h // 5 + h // 2)
    g = geometry(fa, features(img.crop(box)))  # type: ignore[arg-type]
    assert classify(g, 1.0, Thresholds()) == "crop"
    assert g.box is not None and g.whole == [w, h]
    assert np.abs(np.array(g.box) - np.array(box)).max() <= 0.03 * max(w, h)
    assert g.cover_a == pytest.approx(0.25, abs=0.03) and g.cover_b > 0.97


@pytest.mark.parametrize("keep", [0.85, 0.9])
def test_a_large_crop_is_a_crop_not_a_re_encoding(original: tuple[Image.Image, object],
                                                   keep: float) -> None:
    """A crop keeping 85-90 % of the picture lies wholly inside it: typed crop, with its
    share; a copy turned by 4 degrees (each covering most of the other) stays re-encoded."""
    img, fa = original
    w, h = img.size
    side = keep ** 0.5
    cw, ch = round(w * side), round(h * side)
    g = geometry(fa, features(img.crop((w - cw, 0, w, ch))))  # type: ignore[arg-type]
    assert classify(g, 1.0, Thresholds()) == "crop"
    assert min(g.cover_a, g.cover_b) == pytest.approx(keep, abs=0.04)
    turned = img.rotate(4, Image.Resampling.BICUBIC, fillcolor="white")
    assert classify(geometry(fa, features(turned)), 1.0, Thresholds()) == "re-encoded"  # type: ignore[arg-type]


def test_different_paintings_are_not_a_pair(original: tuple[Image.Image, object]) -> None:
    _, fa = original
    for n in (5, 20, 40):
        g = geometry(fa, features(picture(n)))  # type: ignore[arg-type]
        assert g.inliers < Thresholds().min_inliers
        assert classify(g, 0.5, Thresholds()) is None
        assert classify(g, 0.99, Thresholds()) == "related"  # only the embedding says so


def test_licence_classes() -> None:
    table = {"Public domain (museum open access / Wikimedia Commons PD)": "public-domain",
             "CC0 1.0": "cc0", "CC BY 4.0": "cc-by", "cc-by-sa-3.0": "cc-by-sa",
             "CC BY-NC-ND 4.0": "cc-by-nc-nd", "Creative Commons Attribution-NonCommercial":
             "cc-by-nc", "© Museum. All rights reserved": "other", "": "unknown",
             None: "unknown", "unknown (web-collected; research use only)": "unknown"}
    assert {k: licence_class(k) for k in table} == table
    assert parse_shown("default,cc-by-nc") == {"public-domain", "cc0", "cc-by", "cc-by-sa",
                                               "cc-by-nc"}
    with pytest.raises(Exception, match="not a licence class"):
        parse_shown("cc-by,public")


@pytest.fixture
def derived(tmp_path: Path) -> tuple[Path, Path]:
    """Six example paintings, a crop, a mirror image, a recompressed copy and a byte copy;
    licences: the derivatives public domain, the originals all rights reserved."""
    root = tmp_path / "coll"
    rows = ["path,license", *copy_paintings(root, [n * 7 for n in range(6)], "work_",
                                            lambda i: "All rights reserved")]
    src = picture(0)
    w, h = src.size
    src.crop((w // 5, h // 5, w // 5 + 3 * w // 5, h // 5 + 3 * h // 5)).save(root / "crop.jpg")
    ImageOps.mirror(src).save(root / "mirror.jpg", quality=85)
    src.resize((w // 2, h // 2)).save(root / "small.jpg", quality=60)
    shutil.copy(PAINTINGS[0], root / "copy.jpg")
    rows += [f"{n}.jpg,Public domain" for n in ("crop", "mirror", "small", "copy")]
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        index_collection(root, idx, IndexOptions(backbone=FAKE, metadata=root / "meta.csv",
                                                 extractor={"num_workers": 0}))
    return root, tmp_path / "idx"


def test_duplicates_command_types_pairs_and_reports_them(derived: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    _, index = derived
    out = CliRunner().invoke(cli, ["duplicates", "--index", str(index), "--json", "-k", "9",
                                   "--report", str(tmp_path / "rep")])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    typed = {frozenset((p["path_a"], p["path_b"])): p["type"] for p in data["pairs"]}
    assert typed[frozenset(("copy.jpg", "work_0.jpg"))] == "exact"
    assert typed[frozenset(("mirror.jpg", "work_0.jpg"))] == "mirrored"
    assert typed[frozenset(("small.jpg", "work_0.jpg"))] == "re-encoded"
    assert typed[frozenset(("crop.jpg", "work_0.jpg"))] == "crop"
    assert not any("work_" in a and "work_" in b and t for (a, b), t in
                   ((tuple(k), t) for k, t in typed.items()))
    assert data["provenance"]["spaces"][0]["backbone"] == FAKE
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "class=box" in html and "rights: All rights reserved" in html
    made = {p.name for p in (tmp_path / "rep" / "thumbs").glob("*.jpg")}
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["withheld_thumbnails"] >= 1 and len(made) >= 1
    with ArtIndex(index) as idx:
        from artsearch.index.catalogue import artworks

        restricted = {f"{a.id}.jpg" for a in artworks(idx) if a.path.startswith("work_")}
    assert made and not made & restricted  # no copy of a restricted image was written


def test_a_second_duplicates_run_reuses_the_verified_geometry(
        derived: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import artsearch.duplicates.find as dups
    from artsearch.duplicates.find import find_duplicates

    root, index = derived
    with ArtIndex(index) as idx:
        first = [p.as_dict() for p in find_duplicates(idx, k=9)]
    assert (index / "duplicates-geometry.json").is_file()

    def refuse(*_: object) -> object:
        raise AssertionError("verified again")

    monkeypatch.setattr(dups, "geometry", refuse)
    monkeypatch.setattr(dups, "features", refuse)
    with ArtIndex(index) as idx:
        assert [p.as_dict() for p in find_duplicates(idx, k=9)] == first
    # A changed file has a new content hash: its pairs are verified again.
    monkeypatch.undo()
    ImageOps.mirror(picture(0)).save(root / "mirror.jpg", quality=70)
    with ArtIndex(index, create=True) as idx:
        index_collection(root, idx, IndexOptions(backbone=FAKE, metadata=root / "meta.csv",
                                                 extractor={"num_workers": 0}))
    calls: list[int] = []
    real = dups.geometry
    monkeypatch.setattr(dups, "geometry", lambda a, b: calls.append(1) or real(a, b))
    with ArtIndex(index) as idx:
        again = {frozenset((p.path_a, p.path_b)): p.type for p in find_duplicates(idx, k=9)}
    assert calls and again[frozenset(("mirror.jpg", "work_0.jpg"))] == "mirrored"


def test_relabelled_pairs_refit_the_thresholds(derived: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    _, index = derived
    pairs = tmp_path / "pairs.csv"
    out = CliRunner().invoke(cli, ["duplicates", "--index", str(index), "--all", "-k", "9",
                                   "--csv", str(pairs)])
    assert out.exit_code == 0, out.output
    with pairs.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["type"] for r in rows} >= {"exact", "none"}
    for r in rows:
        r["label"] = r["type"]
    with pairs.open("w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = CliRunner().invoke(cli, ["duplicates", "--index", str(index), "--calibrate", "10",
                                   "--labels", str(pairs), "--json"])
    assert out.exit_code == 0, out.output
    record = json.loads((index / "duplicates.json").read_text())
    assert record["labels"] == len(rows) and record["works"] == 10
    assert json.loads(out.stdout)["thresholds"] == record
    rows[0]["label"] = "similar"
    with pairs.open("w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = CliRunner().invoke(cli, ["duplicates", "--index", str(index), "--calibrate", "10",
                                   "--labels", str(pairs)])
    assert out.exit_code == 1
    assert f"{pairs}, line 2" in out.output and "'similar'" in out.output


# -- explained matches ---------------------------------------------------------------------------

@pytest.mark.parametrize("pooling", ["avg", "cavg"])
def test_similarity_maps_add_up_to_the_cosine(pooling: str) -> None:
    from artsearch.backbones import get

    ex = Extractor(get(TRAINABLE), pooling=pooling, precision="fp32", num_workers=0)
    if pooling == "cavg":
        ex.params = {"m0": np.linspace(0.0, 0.3, 16).astype(np.float32)}
    a, b = picture(1), picture(9)
    pm = pair_maps(ex, a, b)
    va, vb = ex.embed_images([a, b])
    assert pm.query.shape == pm.result.shape == (16, 16)  # conv2 of a 32 px input
    assert pm.query.sum() == pytest.approx(pm.cosine, abs=1e-9)
    assert pm.result.sum() == pytest.approx(pm.cosine, abs=1e-9)
    assert float(va @ vb) == pytest.approx(pm.cosine, abs=1e-4)  # the space's own score


@pytest.fixture
def conv_index(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "coll"
    rows = ["path,license", *copy_paintings(
        root, [n * 5 for n in range(8)], "w",
        lambda i: "CC BY 4.0" if i % 2 else "All rights reserved")]
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        index_collection(root, idx, IndexOptions(
            backbone=TRAINABLE, metadata=root / "meta.csv",
            extractor={"num_workers": 0, "precision": "fp32"}))
        index_collection(root, idx, IndexOptions(
            backbone=TRAINABLE, space="tone", pooling="max",
            extractor={"num_workers": 0, "precision": "fp32"}))
    return root, tmp_path / "idx"


def test_explain_maps_sum_to_the_reported_scores(conv_index: tuple[Path, Path]) -> None:
    root, index = conv_index
    out = CliRunner().invoke(cli, ["query", str(root / "w3.jpg"), "--index", str(index),
                                   "-k", "4", "--explain", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    for hit in data["results"]:
        m = data["explain"][str(hit["rank"])]["maps"]["content"]
        assert abs(m["sum_query"] - hit["score"]) <= 1e-4
        assert abs(m["sum_result"] - hit["score"]) <= 1e-4
        assert abs(float(np.sum(m["result"])) - hit["score"]) <= 1e-4
    mixed = CliRunner().invoke(cli, ["query", str(root / "w3.jpg"), "--index", str(index),
                                     "-k", "3", "--mix", "content=2,tone=1", "--explain",
                                     "--json"])
    assert mixed.exit_code == 0, mixed.output
    data = json.loads(mixed.stdout)
    for rank, e in data["explain"].items():
        shares = e["spaces"]
        if rank != "1":  # the query itself: z-scores of an exact match can both be large
            assert sum(v["share"] for v in shares.values()) == pytest.approx(1, abs=1e-3)
        assert shares["content"]["weight"] == 2 and "tone" not in e["maps"]
        assert "not a sum over positions" in e["notes"]["tone"]


@pytest.mark.browser
def test_explain_report_shows_the_maps_and_only_licensed_images(
        conv_index: tuple[Path, Path], tmp_path: Path) -> None:
    root, index = conv_index
    out_dir = tmp_path / "why"
    out = CliRunner().invoke(cli, ["query", str(root / "w3.jpg"), "--index", str(index),
                                   "-k", "4", "--explain", str(out_dir)])
    assert out.exit_code == 0, out.output
    data = json.loads((out_dir / "report.json").read_text())
    assert {r["image_shown"] for r in data["results"]} == {True, False}
    with open_page(out_dir / "index.html") as (page, log):
        srcs = page.evaluate("() => Array.from(document.images).map(i => i.src)")
        assert images_that_failed(page) == []
        assert log == {"console": [], "errors": [], "outside": []}
    assert len(srcs) == 2 * len(data["results"]) and all("/maps/" in s for s in srcs)
    # A withheld work's map is drawn on grey: no pixel of the picture is in it.
    hidden = next(r for r in data["results"] if not r["image_shown"])
    tile = np.asarray(Image.open(out_dir / "maps" / f"r-{hidden['rank']:02d}-content.png"))
    shown = next(r for r in data["results"] if r["image_shown"])
    seen = np.asarray(Image.open(out_dir / "maps" / f"r-{shown['rank']:02d}-content.png"))
    assert tile.std(axis=(0, 1)).max() < seen.std(axis=(0, 1)).max()
    assert np.unique(tile.reshape(-1, 3), axis=0).shape[0] < 4000


# -- citable results ----------------------------------------------------------------------------

def test_a_cited_query_and_a_cluster_run_reproduce(conv_index: tuple[Path, Path]) -> None:
    root, index = conv_index
    out = CliRunner().invoke(cli, ["query", str(root / "w2.jpg"), "--index", str(index),
                                   "-k", "5", "--cite", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    cid = data["citation"]
    assert cid.startswith("q-") and (index / "citations" / f"{cid}.json").is_file()
    assert data["provenance"]["spaces"][0]["weights_sha256"]
    again = CliRunner().invoke(cli, ["show", cid, "--index", str(index)])
    assert again.exit_code == 0, again.output
    assert "reproduced: same works" in again.output
    # A new work that ranks first changes the answer: show says so and exits 2.
    shutil.copy(root / "w2.jpg", root / "twin.jpg")
    with ArtIndex(index) as idx:
        index_collection(root, idx, IndexOptions(backbone=TRAINABLE,
                                                 extractor={"num_workers": 0}))
    changed = CliRunner().invoke(cli, ["show", cid, "--index", str(index)])
    assert changed.exit_code == 2 and "NOT reproduced" in changed.output
    run = CliRunner().invoke(cli, ["cluster", "--index", str(index), "--k", "3",
                                   "--restarts", "0"])
    assert run.exit_code == 0, run.output
    replay = CliRunner().invoke(cli, ["show", "1", "--index", str(index)])
    assert replay.exit_code == 0 and "identical assignments" in replay.output
    bad = CliRunner().invoke(cli, ["show", "q-nothing", "--index", str(index)])
    assert bad.exit_code == 1 and "not a citation id" in bad.output


# -- rights-aware output --------------------------------------------------------------------------

@pytest.fixture
def mixed_rights(tmp_path: Path) -> tuple[Path, Path, set[str]]:
    """24 warm/cool pictures, every third one all rights reserved; returns the restricted
    paths too."""
    from tests.helpers import two_palettes

    root = tmp_path / "coll"
    root.mkdir()
    meta = two_palettes(root)
    lines = meta.read_text().splitlines()
    rows, restricted = ["path,genre,title,license"], set()
    for n, line in enumerate(lines[1:]):
        path, genre = line.split(",")
        licence = '"© 2024 Estate of the artist, all rights reserved"' if n % 3 == 0 else \
            ("CC BY-SA 4.0" if n % 3 == 1 else "Public domain")
        if n % 3 == 0:
            restricted.add(path)
        rows.append(f"{path},{genre},Study {n},{licence}")
    meta.write_text("\n".join(rows) + "\n")
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        index_collection(root, idx, IndexOptions(backbone=FAKE, metadata=meta,
                                                 extractor={"num_workers": 0}))
    return root, tmp_path / "idx", restricted


@pytest.mark.browser
def test_a_report_shows_no_restricted_image(mixed_rights: tuple[Path, Path, set[str]],
                                            tmp_path: Path) -> None:
    _, index, restricted = mixed_rights
    out_dir = tmp_path / "out"
    out = CliRunner().invoke(cli, ["cluster", "--index", str(index), "--k", "2",
                                   "--report", str(out_dir)])
    assert out.exit_code == 0, out.output
    assert "8 withheld by licence" in out.output
    with ArtIndex(index) as idx:
        from artsearch.index.catalogue import artworks

        ids = {a.path: a.id for a in artworks(idx)}
    hidden = {f"thumbs/{ids[p]}.jpg" for p in restricted}
    made = {f"thumbs/{p.name}" for p in (out_dir / "thumbs").glob("*")}
    assert made and not made & hidden  # not even written to the folder
    with open_page(out_dir / "index.html") as (page, log):
        page.click("#toggle-thumbs")
        sources = page.evaluate("""() => [...Array.from(document.images, i => i.src),
            ...Array.from(document.querySelectorAll('image'), i => i.getAttribute('href'))]""")
        tiles = page.locator(".withheld").all_inner_texts()
        assert images_that_failed(page) == []
        assert log == {"console": [], "errors": [], "outside": []}
    shown = {s.split("/out/")[-1] if "/out/" in s else s for s in sources}
    assert shown and not shown & hidden
    assert len(shown) >= 16 - 1  # every licensed work that the page shows has its picture
    assert tiles and all("all rights reserved" in t for t in tiles)
    data = json.loads((out_dir / "report.json").read_text())
    assert data["rights"] == {"shown_licences": ["cc-by", "cc-by-sa", "cc0", "public-domain"],
                              "withheld_thumbnails": 8}
    # The provenance block reproduces the run: its command makes run 2, the same clusters.
    import shlex

    again = shlex.split(data["provenance"]["reproduce"].replace("DIR", str(tmp_path / "b")))
    assert again[:2] == ["artsearch", "cluster"]
    out = CliRunner().invoke(cli, again[1:])
    assert out.exit_code == 0, out.output
    from artsearch.cluster import assignments

    with ArtIndex(index) as idx:
        first, second = (sorted((r["path"], r["cluster"]) for r in assignments(idx, n))
                         for n in (1, 2))
    assert first == second


def test_the_web_app_withholds_restricted_images(
        mixed_rights: tuple[Path, Path, set[str]]) -> None:
    from fastapi.testclient import TestClient

    from artsearch.web import build

    _, index, restricted = mixed_rights
    c = TestClient(build(index), base_url="http://127.0.0.1:8765")
    works = c.get("/api/works", params={"limit": 100}).json()["works"]
    by_path = {w["path"]: w["id"] for w in works}
    hidden = by_path[sorted(restricted)[0]]
    free = next(i for p, i in by_path.items() if p not in restricted)
    tile = c.get(f"/thumb/{hidden}")
    assert tile.headers["content-type"] == "image/svg+xml"
    assert b"Estate of" in tile.content and b"reserved" in tile.content
    assert c.get(f"/image/{hidden}").status_code == 403
    assert c.get(f"/thumb/{free}").headers["content-type"] == "image/jpeg"
    assert c.get(f"/image/{free}").status_code == 200
    everything = TestClient(build(index, licences=parse_shown("all")),
                            base_url="http://127.0.0.1:8765")
    assert everything.get(f"/image/{hidden}").status_code == 200
    # A cluster report made with every licence shown is re-made for this server's policy.
    run = CliRunner().invoke(cli, ["cluster", "--index", str(index), "--k", "2",
                                   "--restarts", "0"])
    assert run.exit_code == 0, run.output
    assert everything.get("/clusters/1/index.html").status_code == 200
    assert everything.get(f"/clusters/1/thumbs/{hidden}.jpg").status_code == 200
    assert c.get("/clusters/1/index.html").status_code == 200
    assert c.get(f"/clusters/1/thumbs/{hidden}.jpg").status_code == 404
    assert "all rights reserved" in c.get("/clusters/1/index.html").text


# -- audit and re-ranking ---------------------------------------------------------------------

def test_audit_counts_occurrences_and_coverage(mixed_rights: tuple[Path, Path, set[str]],
                                               tmp_path: Path) -> None:
    from artsearch.audit import k_occurrence, skewness

    rows = np.array([[1, 2], [0, 2], [0, 1], [0, 2]])
    assert k_occurrence(rows, 5).tolist() == [3, 2, 3, 0, 0]
    assert skewness(np.array([1, 1, 1, 10])) > 1 and skewness(np.ones(5)) == 0
    _, index, _ = mixed_rights
    out = CliRunner().invoke(cli, ["audit", "--index", str(index), "-k", "5", "--json",
                                   "--report", str(tmp_path / "audit")])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    h = data["hubness"]
    assert h["works"] == 24 and len(h["top"]) == 10
    assert sum(b["works"] for b in h["histogram"]) == 24
    occurrences = [t["occurrences"] for t in h["top"]]
    assert occurrences == sorted(occurrences, reverse=True)
    genre = {r["value"]: r for r in data["coverage"]["genre"]}
    assert set(genre) == {"sunset", "seascape"}
    assert sum(r["retrieved_share"] for r in genre.values()) == pytest.approx(1, abs=1e-3)
    assert data["reading"] and data["provenance"]["spaces"][0]["backbone"] == FAKE


def test_the_audit_opens_with_who_crowds_the_results_and_who_is_missing() -> None:
    from artsearch.audit import lead

    hubness = {"k": 10, "works": 1200, "share_of_slots_top_1pc": 0.3, "never_retrieved": 140}
    rajput = {"value": "Rajput", "works": 19, "share": 0.016, "retrieved_share": 0.0,
              "ratio": 0.0, "never_retrieved": 19}
    fair = {"value": "Mughal", "works": 40, "share": 0.033, "retrieved_share": 0.033,
            "ratio": 1.0, "never_retrieved": 2}
    said = lead(hubness, {"school": [fair, rajput]})
    assert said.startswith("12 works (the busiest 1 %) fill 30% of all top-10 result places")
    assert "140 of the 1,200 works are never among anyone's 10 nearest" in said
    assert "the 19 works of school Rajput are retrieved 0.00x" in said
    assert "none of them is ever retrieved" in said
    assert "Rajput" not in lead(hubness, {"school": [fair]})


@pytest.mark.browser
def test_audit_report_renders_offline(mixed_rights: tuple[Path, Path, set[str]],
                                      tmp_path: Path) -> None:
    _, index, _ = mixed_rights
    out = CliRunner().invoke(cli, ["audit", "--index", str(index), "-k", "5",
                                   "--report", str(tmp_path / "audit")])
    assert out.exit_code == 0, out.output
    with open_page(tmp_path / "audit" / "index.html") as (page, log):
        text = page.inner_text("body")
        assert images_that_failed(page) == []
        assert log == {"console": [], "errors": [], "outside": []}
    assert "biggest hubs" in text and "By genre" in text and "Hubness is" in text
    assert "of all top-5 result places" in text and "what it means" in text


def test_csls_rerank_demotes_a_hub(tmp_path: Path) -> None:
    """A work close to everything (the mean of all others) is every query's second result by
    cosine; CSLS discounts it below the query's true twin."""
    from artsearch.audit import csls

    cos = np.array([0.90, 0.95])  # twin, hub
    r = np.array([0.50, 0.93])    # the hub is near everything
    assert np.argmax(cos) == 1 and np.argmax(csls(cos, 0.6, r)) == 0


def test_query_rerank_csls(conv_index: tuple[Path, Path]) -> None:
    root, index = conv_index
    out = CliRunner().invoke(cli, ["query", str(root / "w3.jpg"), "--index", str(index),
                                   "-k", "5", "--rerank", "csls", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    hits = data["results"]
    assert hits[0]["path"] == "w3.jpg" and "csls" in data["search"]["rerank"]
    scores = [h["score"] for h in hits[1:]]  # the query itself first, then by CSLS
    assert scores == sorted(scores, reverse=True)
    assert all(h["cosine"] is not None and h["score"] <= 2 * h["cosine"] for h in hits)
    mixed = CliRunner().invoke(cli, ["query", str(root / "w3.jpg"), "--index", str(index),
                                     "--mix", "content=1,tone=1", "--rerank", "csls"])
    assert mixed.exit_code == 2 and "--rerank applies to one space" in mixed.output


# -- honest calibration (issue 24) ----------------------------------------------------------------

def test_calibration_halves_each_hold_every_type_and_its_negatives(tmp_path: Path) -> None:
    from artsearch.duplicates.fit import DERIVATIONS

    root = tmp_path / "coll"
    copy_paintings(root, list(range(0, 40, 2)), "w", lambda i: "Public domain")
    # A PNG re-save of one work: the same pixels, so never a "hard negative" of it.
    Image.open(root / "w0.jpg").convert("RGB").save(root / "w0-resaved.png")
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        index_collection(root, idx, IndexOptions(backbone=FAKE, extractor={"num_workers": 0}))
    out = CliRunner().invoke(cli, ["duplicates", "--index", str(tmp_path / "idx"),
                                   "--calibrate", "21", "--json"])
    assert out.exit_code == 0, out.output
    record = json.loads(out.stdout)["thresholds"]
    held = record["held_out"]
    # Every derivation type and the negatives are judged, and the table's counts add up.
    from artsearch.duplicates.fit import _TRUE_TYPE

    assert {_TRUE_TYPE[d] for d in DERIVATIONS} | {"none"} <= set(held)
    assert sum(row["pairs"] for row in held.values()) == record["judged_on"]
    assert sum(row["predicted"] for row in held.values()) == record["judged_on"]
    assert abs(record["fitted_on"] - record["judged_on"]) <= len(DERIVATIONS) + 1


def test_split_halves_deals_each_kind_into_both() -> None:
    from artsearch.duplicates.fit import Example, split_halves

    examples = [Example(None, 1.0, how, how) for how in ("crop", "detail", "negative")  # type: ignore[arg-type]
                for _ in range(5)]
    fit, held = split_halves(examples, seed=3)
    assert len(fit) + len(held) == 15
    for kind in ("crop", "detail", "negative"):
        assert sum(e.how == kind for e in fit) == 3 and sum(e.how == kind for e in held) == 2


def test_a_resave_of_the_same_pixels_is_not_a_hard_negative(tmp_path: Path) -> None:
    from artsearch.duplicates.fit import _same_pixels
    from artsearch.index.catalogue import artworks

    root = tmp_path / "coll"
    copy_paintings(root, [0, 3], "w", lambda i: "Public domain")
    original = Image.open(root / "w0.jpg").convert("RGB")
    original.save(root / "w0.png")
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        index_collection(root, idx, IndexOptions(backbone=FAKE, extractor={"num_workers": 0}))
        arts = {a.id: a for a in artworks(idx)}
        by = {a.path: a.id for a in arts.values()}
        assert _same_pixels(idx, arts, by["w0.jpg"], by["w0.png"], original)
        assert not _same_pixels(idx, arts, by["w0.jpg"], by["w1.jpg"], original)


def framed(painting: Image.Image, frame: Image.Image, side: int = 420) -> Image.Image:
    """`painting` inside a wide ornamented frame cut from `frame` (the same frame for all)."""
    out = frame.resize((side, side)).copy()
    band = int(side * 0.11)
    out.paste(painting.resize((side - 2 * band, side - 2 * band)), (band, band))
    return out


def test_two_paintings_in_one_frame_are_no_pair(tmp_path: Path) -> None:
    from artsearch.duplicates.find import Thresholds, classify, features, geometry

    frame = picture(30)  # a busy painting makes a frame full of keypoints
    a, b = framed(picture(1), frame), framed(picture(9), frame)
    g = geometry(features(a), features(b))
    assert g.inliers >= Thresholds().min_inliers  # the frames agree, point for point
    assert g.interior < 0.35 or g.spread < 3
    assert classify(g, 0.80, Thresholds()) is None
    # The same framed painting, re-encoded, is still a pair: its interior agrees too.
    out = tmp_path / "again.jpg"
    a.resize((380, 380)).save(out, quality=70)
    g2 = geometry(features(a), features(Image.open(out).convert("RGB")))
    assert classify(g2, 0.95, Thresholds()) == "re-encoded"


def test_two_versions_of_one_composition_are_related_not_a_crop() -> None:
    from artsearch.duplicates.find import MIN_DENSITY, Thresholds, classify, features, geometry
    from artsearch.duplicates.fit import another_version, derive

    original = picture(7)
    # Painted again: the same layout with its motifs a few pixels off, other brushwork.
    version = another_version(original, picture(20), np.random.default_rng(0))
    g = geometry(features(original), features(version))
    assert g.inliers >= Thresholds().min_inliers  # the composition agrees...
    assert g.density < MIN_DENSITY  # ...on few of the points the two pictures share
    assert classify(g, 0.99, Thresholds()) == "related"
    # A printed reproduction of the same painting (the sparsest derivative) stays a copy.
    printed, _ = derive(original, "halftone", np.random.default_rng(0))
    g2 = geometry(features(original), features(printed))
    assert g2.density >= MIN_DENSITY
    assert classify(g2, 0.90, Thresholds()) == "re-encoded"
