"""Region index: build beside a space, keep up to date, find a motif or a detail's source."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artsearch.duplicates.find import Thresholds, find_duplicates
from artsearch.errors import OptionError
from artsearch.index import ArtIndex
from artsearch.regions import parse_box, query_regions
from artsearch.regions.store import (
    WORK_RECALL_BAR,
    _merge,
    _structure,
    build_regions,
    load_regions,
)
from tests.helpers import DEV, FAKE, TRAINABLE, invoke, make_collection, requires_dev


def region_index(collection: Path, *extra: str) -> tuple[int, str, str]:
    return invoke("index", str(collection), "--backbone", TRAINABLE, "--workers", "0",
                  "--regions", *extra)


def detail(source: Path, box: tuple[int, int, int, int], out: Path, scale: int = 3) -> Path:
    """A part of a picture, enlarged and re-encoded, as a print of a detail would be."""
    with Image.open(source) as img:
        part = img.convert("RGB").crop(box)
    part.resize((part.width * scale, part.height * scale), Image.Resampling.BICUBIC).save(
        out, quality=80)
    return out


def test_regions_are_built_beside_the_space_and_kept_up_to_date(
        collection: Path, isolated_home: Path) -> None:
    code, out, err = region_index(collection)
    assert code == 0, err
    assert "regions: 12 works" in out and "12 described, 0 dropped" in out
    with ArtIndex(isolated_home / "default") as idx:
        stored = load_regions(idx, idx.space("content"))
        assert stored is not None
        assert len(stored.works) == 12 and set(np.unique(stored.owners)) == set(stored.works)
        assert stored.index.ntotal == len(stored.owners) == len(stored.boxes) > 12 * 2
        x, y, w, h = stored.boxes.T.astype(np.float64)
        assert (x >= 0).all() and (y >= 0).all() and (w > 0).all() and (h > 0).all()
        assert (x + w <= 1 + 1e-3).all() and (y + h <= 1 + 1e-3).all()
        first = stored.index.ntotal
    code, out, _ = invoke("info")
    assert code == 0 and f"regions: 12 works, {first:,} regions (conv2, flat)" in out

    # A later run without --regions keeps them current: new works described, nothing else.
    make_collection(collection, n=2, start=40)
    code, out, err = invoke("index", str(collection), "--workers", "0")
    assert code == 0, err
    assert "regions: 14 works" in out and "2 described, 0 dropped" in out

    # A removed work's regions go with it; the boxes stay aligned with their works.
    (collection / "a" / "work_041.jpg").unlink()
    code, out, err = invoke("index", str(collection), "--workers", "0", "--prune")
    assert code == 0, err
    assert "regions: 13 works" in out and "0 described, 1 dropped" in out
    with ArtIndex(isolated_home / "default") as idx:
        stored = load_regions(idx, idx.space("content"))
        assert stored is not None and len(stored.works) == 13
        assert stored.index.ntotal == len(stored.owners) > first
        # each work's regions are still its own: rebuilding one work's gives the same rows
        ids = sorted(stored.works)
        assert set(np.unique(stored.owners)) == set(ids)


def test_a_region_finds_its_work_and_the_query_work_is_left_out(
        collection: Path, tmp_path: Path) -> None:
    assert region_index(collection)[0] == 0
    source = collection / "b" / "work_004.jpg"
    fragment = detail(source, (20, 10, 70, 50), tmp_path / "fragment.jpg")

    code, out, err = invoke("query", str(fragment), "--in-regions", "-k", "3", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["query"]["indexed"] is False
    paths = [h["path"] for h in result["results"]]
    assert "b/work_004.jpg" in paths
    for hit in result["results"]:
        x, y, w, h = hit["box"]
        assert 0 <= x < x + w <= 1.001 and 0 <= y < y + h <= 1.001

    # A page of it: the part sought and each result with its region boxed; works without a
    # catalogued licence are grey tiles (their boxes still drawn), the user's own file shown.
    code, out, err = invoke("query", str(fragment), "--in-regions", "-k", "3", "--report",
                            str(tmp_path / "found"))
    assert code == 0, err
    page = (tmp_path / "found" / "index.html").read_text()
    assert page.count("<rect ") == 4 and page.count("class=withheld") == 3
    assert (tmp_path / "found" / "thumbs" / "query.jpg").is_file()
    assert not (tmp_path / "found" / "thumbs" / "1.jpg").exists()
    data = json.loads((tmp_path / "found" / "report.json").read_text())
    assert [h["path"] for h in data["results"]] == paths
    code, _, err = invoke("query", str(fragment), "--report", str(tmp_path / "no"))
    assert code == 2 and "--report goes with --region or --in-regions" in err

    # As a IIIF manifest, each result's matching region is an annotation a viewer draws.
    manifest = tmp_path / "found.json"
    code, out, err = invoke("query", str(fragment), "--in-regions", "-k", "3", "--iiif-out",
                            str(manifest), "--json")
    assert code == 0, err
    assert json.loads(out)["iiif_manifest"] == str(manifest)
    data = json.loads(manifest.read_text())
    pytest.importorskip("iiif_prezi3").Manifest(**data)
    canvases = data["items"]
    assert len(canvases) == 3
    for canvas, hit in zip(canvases, result["results"], strict=True):
        (page,) = canvas["annotations"]
        (note,) = page["items"]
        assert note["motivation"] == "tagging" and note["body"]["type"] == "TextualBody"
        target, _, xywh = note["target"].partition("#xywh=")
        assert target == canvas["id"]
        left, top, w, h = (int(v) for v in xywh.split(","))
        bx, by, bw, bh = hit["box"]
        assert abs(left - bx * canvas["width"]) <= 1 and abs(top - by * canvas["height"]) <= 1
        assert abs(w - bw * canvas["width"]) <= 1 and abs(h - bh * canvas["height"]) <= 1

    # Asked from the work itself, the motif is sought elsewhere: the work is not a result.
    code, out, err = invoke("query", "b/work_004.jpg", "--region", "0.2,0.1,0.5,0.5", "-k", "3")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[-2:] == ["region", "x,y,w,h"]
    assert len(lines) == 4 and "b/work_004.jpg" not in out
    assert "the query's own work is left out" in err


def test_region_queries_say_what_is_missing_or_wrong(collection: Path, isolated_home: Path,
                                                     tmp_path: Path) -> None:
    assert invoke("index", str(collection), "--backbone", TRAINABLE, "--workers", "0")[0] == 0
    code, _, err = invoke("query", "a/work_001.jpg", "--region", "0,0,0.5,0.5")
    assert code == 1 and "has no region index" in err and "--regions" in err
    for bad in ("0.5,0.5,0.6,0.2", "0,0,0,1", "a,b,c,d", "0.1,0.1,0.2"):
        code, _, err = invoke("query", "a/work_001.jpg", "--region", bad)
        assert code == 2 and "X,Y,W,H as fractions" in err, bad
    code, _, err = invoke("query", "--id", "1", "--in-regions")
    assert code == 2 and "give --region" in err
    code, _, err = invoke("query", "a/work_001.jpg", "--region", "0,0,1,1", "--cite")
    assert code == 2 and "--cite does not apply" in err

    # A backbone whose map has no spatial extent cannot describe regions: said, not crashed.
    other = tmp_path / "other"
    make_collection(other, n=3)
    code, _, err = invoke("index", str(other), "--index", str(tmp_path / "flat-idx"),
                          "--backbone", FAKE, "--workers", "0", "--regions")
    assert code != 0 and "gives no spatial map" in err


def test_parse_box_clips_rounding_and_refuses_boxes_outside() -> None:
    assert parse_box("0.5,0.25,0.5,0.75") == (0.5, 0.25, 0.5, 0.75)
    x, y, w, h = parse_box("0.3,0.3,0.7000001,0.2")
    assert x + w <= 1
    with pytest.raises(OptionError):
        parse_box("-0.1,0,0.5,0.5")
    with pytest.raises(OptionError):
        parse_box("nan,0,0.5,0.5")


@pytest.mark.heavy
def test_codes_are_used_only_when_they_keep_the_best_works(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import artsearch.regions.store as regions

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(200, 32)).astype(np.float32)
    owners = np.repeat(np.arange(200), 40).astype(np.int64)
    vectors = centres[owners] + 0.3 * rng.normal(size=(len(owners), 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    monkeypatch.setattr(regions, "EXACT_UP_TO", 1000)
    structure, recall, index = _structure(vectors, owners)
    if structure == "flat":
        assert recall is None
    else:
        assert structure in ("PQ4", "PQ8", "SQ4", "SQ8", "SQfp16")
        assert recall is not None and recall >= WORK_RECALL_BAR
        assert index.ntotal == len(vectors)
    # Impossible to meet: exact search, never a worse code.
    monkeypatch.setattr(regions, "WORK_RECALL_BAR", 1.01)
    assert _structure(vectors, owners)[0] == "flat"


def test_removing_works_from_product_codes_keeps_rows_aligned(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import artsearch.regions.store as regions

    rng = np.random.default_rng(1)
    owners = np.repeat(np.arange(1, 101), 30).astype(np.int64)
    vectors = rng.normal(size=(len(owners), 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    boxes = np.tile(np.array([[0, 0, 0.5, 0.5]], np.float32), (len(owners), 1))
    boxes[:, 0] = owners / 1000  # each work's boxes carry its id
    monkeypatch.setattr(regions, "EXACT_UP_TO", 100)
    monkeypatch.setattr(regions, "WORK_RECALL_BAR", 0.0)  # force product codes
    works = {int(a): f"sha{a}" for a in np.unique(owners)}
    whole = {a: np.full(16, a, np.float32) for a in works}
    merged = _merge(None, set(), vectors, owners, boxes, works, whole)
    assert merged is not None and merged.meta["structure"].startswith("PQ")
    merged.meta = {"structure": merged.meta["structure"]}
    after = _merge(merged, {5, 50}, vectors[:30], np.full(30, 101, np.int64), boxes[:30],
                   {101: "sha101"}, {101: np.full(16, 101, np.float32)})
    assert after is not None
    assert after.index.ntotal == len(after.owners) == len(after.boxes) == 99 * 30
    assert not np.isin(after.owners, [5, 50]).any() and set(after.works) == (
        set(works) - {5, 50}) | {101}
    assert set(after.whole) == set(after.works) and after.whole[77][0] == 77
    old = after.owners != 101
    assert np.allclose(after.boxes[old, 0], after.owners[old] / 1000, atol=1e-3)
    # a stored region still answers with its own work: search a work's exact vector
    row = int(np.flatnonzero(after.owners == 77)[3])
    _, found = after.index.search(vectors[np.flatnonzero(owners == 77)[3]][None], 1)
    assert after.owners[found[0][0]] == 77 and found[0][0] == row


@requires_dev()
def test_lite0_regions_find_where_a_detail_of_a_real_painting_comes_from(
        tmp_path: Path) -> None:
    import csv

    with (DEV / "metadata.csv").open() as f:
        rows = list(csv.DictReader(f))[::60][:16]
    root = tmp_path / "dev"
    for r in rows:
        (root / r["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEV / r["path"], root / r["path"])
    source = rows[7]["path"]
    with Image.open(root / source) as img:
        w, h = img.size
    (root / "prints").mkdir()
    detail(root / source, (w // 2, h // 4, w // 2 + w // 4, h // 4 + h // 4),
           root / "prints" / "detail.jpg", scale=3)
    code, _, err = invoke("index", str(root), "--workers", "0", "--regions", "-q")
    assert code == 0, err
    with ArtIndex(Path(tmp_path / "artsearch-home" / "default")) as idx:
        # duplicates: with the whole-picture shortlist switched off, the regions alone
        # propose the detail's pair, and SIFT types it
        off = Thresholds(shortlist=1.01, near=0, small=0)
        pairs = find_duplicates(idx, thresholds=off)
        typed = {frozenset((p.path_a, p.path_b)): p.type for p in pairs}
        assert typed.get(frozenset((source, "prints/detail.jpg"))) == "detail", typed
        assert find_duplicates(idx, thresholds=off, regions=False) == []
        # A collection this small verifies every work's ten nearest whatever their cosine:
        # the detail is found without the region index too.
        small = find_duplicates(idx, thresholds=replace(off, small=500), regions=False)
        assert {frozenset((p.path_a, p.path_b)): p.type for p in small}.get(
            frozenset((source, "prints/detail.jpg"))) == "detail"
        found = 0
        for r in rows[:6]:
            with Image.open(root / r["path"]) as img:
                w, h = img.size
            part = detail(root / r["path"], (w // 3, h // 3, w // 3 + w // 4, h // 3 + h // 4),
                          tmp_path / "d.jpg", scale=2)
            result = query_regions(idx, image=part, k=3)
            found += r["path"] in [h.path for h in result.hits]
    assert found >= 5, found  # a 6 % detail, enlarged: its painting among the top 3 of 16


def test_build_regions_skips_a_work_it_cannot_read(collection: Path, isolated_home: Path
                                                   ) -> None:
    assert invoke("index", str(collection), "--backbone", TRAINABLE, "--workers", "0")[0] == 0
    (collection / "a" / "work_003.jpg").write_bytes(b"not a picture any more")
    with ArtIndex(isolated_home / "default") as idx:
        report = build_regions(idx, "content")
        assert report.works == 11 and [p for p, _ in report.skipped] == ["a/work_003.jpg"]
        result = query_regions(idx, image=collection / "b" / "work_000.jpg", k=20)
        assert "a/work_003.jpg" not in [h.path for h in result.hits]
        assert result.hits[0].path != "b/work_000.jpg"  # an indexed file: its own work left out


# -- in the app --------------------------------------------------------------------------------


@pytest.fixture
def region_app(collection: Path, isolated_home: Path, tmp_path: Path) -> Path:
    meta = tmp_path / "meta.csv"  # open licences: the app shows the pictures
    meta.write_text("path,license\n" + "".join(
        f"{p.relative_to(collection).as_posix()},CC0 1.0\n"
        for p in sorted(collection.rglob("*.jpg"))))
    assert region_index(collection, "--metadata", str(meta))[0] == 0
    return isolated_home / "default"


def test_the_app_finds_a_part_of_a_work_elsewhere(region_app: Path) -> None:
    from tests.helpers import client

    c = client(region_app)
    page = c.get("/work/5")
    assert page.status_code == 200 and 'id="region-form"' in page.text
    answer = c.get("/api/works/5/regions", params={"box": "0.1,0.2,0.5,0.5", "k": 4}).json()
    assert answer["query"]["id"] == 5 and answer["query"]["region"] == [0.1, 0.2, 0.5, 0.5]
    assert len(answer["results"]) == 4 and 5 not in [r["id"] for r in answer["results"]]
    cli = json.loads(invoke("query", "--id", "5", "--region", "0.1,0.2,0.5,0.5", "-k", "4",
                            "--json")[1])
    assert [r["id"] for r in cli["results"]] == [r["id"] for r in answer["results"]]
    html = c.get("/work/5/regions", params={"box": "0.1,0.2,0.5,0.5", "k": 4})
    assert html.status_code == 200 and html.text.count("<rect ") == 5  # the query's and 4
    for bad in ("1,1,1,1", "0,0,0.5", "x"):
        r = c.get("/api/works/5/regions", params={"box": bad})
        assert r.status_code == 400 and "X,Y,W,H" in r.json()["error"], bad
    assert c.get("/api/works/5/regions", params={"box": "0,0,1,1", "space": "nope"}
                 ).status_code in (400, 404)


def test_without_a_region_index_the_app_offers_no_box(collection: Path,
                                                      isolated_home: Path) -> None:
    from tests.helpers import client

    assert invoke("index", str(collection), "--backbone", TRAINABLE, "--workers", "0")[0] == 0
    c = client(isolated_home / "default")
    assert 'id="region-form"' not in c.get("/work/1").text
    r = c.get("/api/works/1/regions", params={"box": "0,0,1,1"})
    assert r.status_code == 404 and "--regions" in r.json()["error"]


@pytest.mark.browser
def test_a_curator_draws_a_box_and_finds_it_elsewhere(region_app: Path) -> None:
    from tests.browser import open_url, screenshot
    from tests.helpers import serving, violations

    with serving(region_app) as base, open_url(base + "/work/3", base) as (page, log):
        assert violations(page) == []
        picture = page.locator("#region-overlay").bounding_box()
        assert picture is not None and picture["width"] > 20
        x, y, w, h = picture["x"], picture["y"], picture["width"], picture["height"]
        page.mouse.move(x + 0.2 * w, y + 0.3 * h)
        page.mouse.down()
        page.mouse.move(x + 0.5 * w, y + 0.5 * h, steps=5)
        page.mouse.move(x + 0.7 * w, y + 0.8 * h, steps=5)
        page.mouse.up()
        box = [float(v) for v in page.input_value("#region-box").split(",")]
        assert box == pytest.approx([0.2, 0.3, 0.5, 0.5], abs=0.03)
        page.click("#region-find")
        page.wait_for_load_state("load")
        assert "/work/3/regions?box=" in page.url
        assert page.locator("#region-results .tile").count() == 11
        assert page.locator("#region-results rect").count() == 11
        screenshot(page, "regions-found-elsewhere.png")
        assert violations(page) == []
        assert log["console"] == [] and log["errors"] == [] and log["outside"] == []


def test_an_interrupted_region_build_keeps_what_it_described(collection: Path,
                                                              isolated_home: Path) -> None:
    assert invoke("index", str(collection), "--backbone", TRAINABLE, "--workers", "0")[0] == 0
    seen: list[int] = []

    def stop_after_five(done: int, total: int) -> None:
        seen.append(done)
        if done == 5:
            raise KeyboardInterrupt

    with ArtIndex(isolated_home / "default") as idx:
        with pytest.raises(KeyboardInterrupt):
            build_regions(idx, "content", progress=stop_after_five, checkpoint_seconds=0)
        stored = load_regions(idx, idx.space("content"))
        assert stored is not None and len(stored.works) == 5  # saved after each work
        again = build_regions(idx, "content")
        assert again.added == 7 and again.works == 12


@pytest.mark.parametrize("damage", ["truncate", "flip", "replace"])
def test_a_damaged_region_store_is_one_line_and_the_next_index_run_rebuilds_it(
        region_app: Path, collection: Path, damage: str) -> None:
    """Truncated, a byte changed in place, or swapped for another valid region file: every
    reader says so in one line with the fix; `duplicates` goes on without details; the app
    answers a page, not a traceback; `index --regions` sets the file aside and rebuilds."""
    from tests.helpers import client

    (store,) = (region_app / "regions").glob("space-*.npz")
    data = store.read_bytes()
    if damage == "truncate":
        store.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        store.write_bytes(data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:])
    else:  # a valid file, but not the one saved: another index's regions
        other = region_app.parent / "other"
        make_collection(other, n=4, start=70)
        assert invoke("index", str(other), "--backbone", TRAINABLE, "--workers", "0",
                      "--regions", "--index", str(region_app.parent / "other-index"))[0] == 0
        shutil.copyfile(next((region_app.parent / "other-index" / "regions").glob("*.npz")),
                        store)
    for command in (["query", "a/work_001.jpg", "--in-regions"],
                    ["query", "--id", "2", "--region", "0,0,0.5,0.5"]):
        code, out, err = invoke(*command)
        assert code == 1 and "Traceback" not in out + err, out + err
        assert f"{store}: " in err and "--regions` to set it aside" in err
        assert len(err.strip().splitlines()) == 1, err
    code, out, err = invoke("duplicates")
    assert code == 0 and "details not sought, the region index is damaged" in err, out + err
    code, out, _ = invoke("info")
    assert code == 0 and "regions: DAMAGED" in out
    r = client(region_app).get("/api/works/5/regions", params={"box": "0.1,0.2,0.5,0.5"})
    assert r.status_code == 500 and str(store.name) in r.json()["error"]

    code, out, err = region_index(collection)
    assert code == 0 and "moved aside to space-" in err and ".damaged-" in err, out + err
    assert len(list((region_app / "regions").glob("*.damaged-*"))) == 1
    assert "12 described" in out
    assert invoke("query", "a/work_001.jpg", "--in-regions", "-k", "2")[0] == 0
