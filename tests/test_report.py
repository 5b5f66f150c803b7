"""Cluster reports: what they say is right, and they work in a real browser from disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from artsearch.cli import cli
from artsearch.cluster import space_matrix
from artsearch.index import ArtIndex
from artsearch.indexer import IndexOptions, index_collection
from artsearch.reports.clusters import near_duplicates, project_2d
from tests.browser import images_that_failed, open_page, screenshot
from tests.helpers import FAKE, two_palettes


@pytest.fixture
def catalogued(tmp_path: Path) -> tuple[Path, Path]:
    """24 warm/cool pictures with titles, artists and dates, plus an exact copy of one."""
    root = tmp_path / "coll"
    root.mkdir()
    meta = two_palettes(root)
    shutil.copy(root / "warm_00.png", root / "warm_00_copy.png")
    lines = meta.read_text().splitlines()
    rows = ["path,genre,title,artist,date,license"]
    for n, line in enumerate([*lines[1:], "warm_00_copy.png,sunset"]):
        path, genre = line.split(",")
        rows.append(f"{path},{genre},Study <{n}>,{'Ann' if n % 3 else 'Bo'},"
                    f"{1610 + n if genre == 'sunset' else 1800 + n},Public domain")
    meta.write_text("\n".join(rows) + "\n")
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        index_collection(root, idx, IndexOptions(backbone=FAKE, metadata=meta,
                                                 extractor={"num_workers": 0}))
    return root, tmp_path / "idx"


def make_report(index: Path, out: Path, *extra: str) -> dict:
    result = CliRunner().invoke(cli, ["cluster", "--index", str(index), "--k", "2",
                                      "--report", str(out), *extra])
    assert result.exit_code == 0, result.output
    assert f"report: {out / 'index.html'}" in result.output
    return json.loads((out / "report.json").read_text())


def test_report_folder_says_what_the_run_found(catalogued: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    _, index = catalogued
    # The fake backbone sees only colour, so distinct pictures of one palette are close.
    data = make_report(index, tmp_path / "out", "--duplicates", "0.9999")
    html = (tmp_path / "out" / "index.html").read_text()
    clusters = data["clusters"]
    assert sorted(c["size"] for c in clusters) == [12, 13]
    assert sorted(c["label"] for c in clusters) == ["seascape · 19th c.", "sunset · 17th c."]
    # Contact sheets run from the medoid (highest mean similarity to the other members) down.
    with ArtIndex(index) as idx:
        ids, vectors = space_matrix(idx, "content")
        with idx.store.session() as s:
            from artsearch.index.store import Artwork
            paths = {a.id: a.path for a in s.query(Artwork)}
    row_of = {paths[a]: r for r, a in enumerate(ids)}
    for c in clusters:
        members = [row_of[p["path"]] for p in data["points"] if p["cluster"] == c["cluster"]]
        centrality = dict(zip(members, (vectors[members] @ vectors[members].T).sum(1),
                              strict=True))
        assert centrality[row_of[c["medoid"]]] == pytest.approx(max(centrality.values()))
        sheet = [centrality[row_of[p]] for p in c["central"]]
        assert np.all(np.diff(sheet) <= 1e-5) and len(sheet) == min(12, c["size"])
        assert max((centrality[row_of[p]] for p in c["outliers"]), default=-1) <= min(sheet)
    # The exact copy is flagged, and only it.
    assert [{d["a"], d["b"]} for d in data["near_duplicates"]] == [
        {"warm_00.png", "warm_00_copy.png"}]
    # Provenance: what reproduces the report.
    prov = data["provenance"]
    assert prov["seed"] == 0 and prov["k"].startswith("2 (given)")
    with ArtIndex(index) as idx:
        assert prov["weights sha256"] == idx.space("content").weights_sha256
    assert "--method kmeans --k 2 --centre no --seed 0" in prov["reproduce"]
    assert "genre" in data["agreement"] and "century" in data["agreement"]
    markup = html.split("<script>")[0]  # catalogue text is escaped in the markup
    assert "Study &lt;3&gt;" in markup and "<3>" not in markup
    assert len(list((tmp_path / "out" / "thumbs").glob("*.jpg"))) == 25


def test_report_of_a_stored_run_survives_a_missing_image(catalogued: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    root, index = catalogued
    CliRunner().invoke(cli, ["cluster", "--index", str(index), "--k", "2"])
    (root / "cool_01.png").unlink()
    result = CliRunner().invoke(cli, ["clusters", "1", "--index", str(index), "--report",
                                      str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    assert "warning: cool_01.png: no thumbnail" in result.output
    data = json.loads((tmp_path / "again" / "report.json").read_text())
    assert [u["path"] for u in data["unreadable"]] == ["cool_01.png"]
    assert len(data["points"]) == 25


def test_same_seed_same_report_assignments(catalogued: tuple[Path, Path],
                                           tmp_path: Path) -> None:
    _, index = catalogued
    first = make_report(index, tmp_path / "a", "--seed", "3")
    second = make_report(index, tmp_path / "b", "--seed", "3")
    assert first["points"] == second["points"]  # same clusters and the same map
    assert first["clusters"] == second["clusters"]


def test_map_falls_back_to_pca_for_tiny_sets_and_near_duplicates_are_exact() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    coords, how = project_2d(x, seed=0)
    assert coords.shape == (8, 2) and how.startswith("first two principal components")
    y = np.concatenate([x, x[:1] * 0.999 + 0.001 * x[1:2]])
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    pairs = near_duplicates(y, 0.99)
    assert [(i, j) for i, j, _ in pairs] == [(0, 8)] and pairs[0][2] > 0.99


@pytest.mark.browser
def test_report_renders_in_headless_chromium(catalogued: tuple[Path, Path],
                                             tmp_path: Path) -> None:
    _, index = catalogued
    make_report(index, tmp_path / "out")
    with open_page(tmp_path / "out" / "index.html") as (page, log):
        assert page.evaluate("document.images.length") >= 25
        assert images_that_failed(page) == []
        ids = page.evaluate("() => Array.from(document.querySelectorAll('[id]'), e => e.id)")
        assert len(ids) == len(set(ids)) > 5
        # The map drew: one dot per work, spread over a visible area.
        assert page.get_attribute("body", "data-map-points") == "25"
        box = page.locator("#map").bounding_box()
        assert box and box["width"] > 500 and box["height"] > 300
        spots = page.evaluate("""() => Array.from(document.querySelectorAll('#dots circle'))
            .map(c => { const b = c.getBoundingClientRect();
                        return [Math.round(b.x), Math.round(b.y), b.width]; })""")
        assert len(spots) == 25 and all(w > 0 for _, _, w in spots)
        assert len({(x, y) for x, y, _ in spots}) > 20
        # Hovering a dot names the work; the thumbnail view puts every work's picture on it.
        page.hover("#dots circle[data-i='0']")
        card = page.locator("#hover-card")
        assert card.is_visible() and "Study" in card.inner_text()
        page.click("#toggle-thumbs")
        # Every work gets a frame, and every picture is painted on the canvas over the map.
        assert page.locator("#thumb-layer rect").count() == 25
        page.wait_for_selector("body[data-thumbs-drawn='25']", timeout=20_000)
        # The map fills the page's width, its thumbnails are larger than a glance (not ~30
        # px under a dot: the dots step aside), and hovering a thumbnail still names it.
        main = page.locator("main").bounding_box()
        box = page.locator("#map").bounding_box()
        assert box and main and box["width"] >= 0.9 * (main["width"] - 64)
        sides = page.evaluate("""() => Array.from(document.querySelectorAll(
            '#thumb-layer rect'), i => i.getBoundingClientRect().width)""")
        assert min(sides) >= 48
        canvas = page.locator("#thumb-canvas").bounding_box()
        assert canvas and abs(canvas["width"] - box["width"]) < 2
        # The canvas holds pictures, not only the frames' colours: many distinct pixels
        # (read from a screenshot: a canvas drawn from file:// pictures cannot be read back).
        import io

        from PIL import Image

        drawn = Image.open(io.BytesIO(page.locator("#thumb-canvas").screenshot()))
        assert len(set(drawn.convert("RGB").getdata())) > 1000
        assert not page.locator("#dots").is_visible()
        page.hover("#thumb-layer rect[data-i='3']")
        assert card.is_visible() and "Study" in card.inner_text()
        shot = screenshot(page, "cluster-report.png")
        assert log == {"console": [], "errors": [], "outside": []}
    assert shot.stat().st_size > 10_000


def test_labels_are_distinct_and_unique_fields_are_not_charted(tmp_path: Path) -> None:
    from artsearch.cluster import NO_LABEL, distinct_labels

    def entry(*values: str) -> dict:
        return {"over_represented": [{"value": v} for v in values]}

    labels = [e["label"] for e in distinct_labels([
        entry("landscape", "Dutch", "17th c."), entry("landscape", "Dutch", "19th c."),
        entry("landscape"), entry("landscape"), entry(), entry(), entry("portrait")])]
    assert labels[:2] == ["landscape · Dutch · 17th c.", "landscape · Dutch · 19th c."]
    assert labels[2:4] == ["landscape · 1 of 2", "landscape · 2 of 2"]
    assert labels[4:] == [NO_LABEL, NO_LABEL, "portrait"]

    root = tmp_path / "coll"
    root.mkdir()
    meta = two_palettes(root)
    rows = meta.read_text().splitlines()
    # A per-work URL (mostly unique) and no titles: the report must chart neither the URLs
    # nor present file names as titles.
    meta.write_text("\n".join([rows[0] + ",source"] + [
        f"{r},https://example.org/{n}" for n, r in enumerate(rows[1:])]) + "\n")
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        index_collection(root, idx, IndexOptions(backbone=FAKE, metadata=meta,
                                                 extractor={"num_workers": 0}))
    make_report(tmp_path / "idx", tmp_path / "out")
    html = (tmp_path / "out" / "index.html").read_text()
    assert "<h3>source</h3>" not in html and "Not charted: source" in html
    assert "<h3>genre</h3>" in html
    assert "untitled (warm_00.png)" in html
    header = html.split("</header>")[0]
    assert "nredo" not in header and "best of 3 starts" in header


def test_every_badge_reads_at_the_contrast_wcag_asks() -> None:
    """White text on each badge colour at 4.5:1 or more (the palette's olive #999933, once
    the "fair" badge, is 3.0:1)."""
    import re

    from artsearch.reports.page import STYLE

    def luminance(hex_colour: str) -> float:
        rgb = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    badges = re.findall(r"\.badge\.(\w+) \{ background: (#[0-9A-Fa-f]{6}); \}", STYLE)
    assert {name for name, _ in badges} == {"good", "fair", "poor"}
    for name, colour in badges:
        assert 1.05 / (luminance(colour) + 0.05) >= 4.5, (name, colour)


def test_a_report_written_again_reuses_its_map_layout(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The map's layout is kept in INDEX/maps by the vectors and seed: the app's copy of a
    report for other licence rules does not run t-SNE again."""
    from types import SimpleNamespace

    import artsearch.reports.clusters as reports

    index = SimpleNamespace(path=tmp_path)
    vectors = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    first = reports.kept_layout(index, vectors, 3)  # type: ignore[arg-type]
    assert list((tmp_path / "maps").glob("report-layout-*.npz"))

    def no_tsne(*_a: object) -> None:
        raise AssertionError("laid out again")

    monkeypatch.setattr(reports, "project_2d", no_tsne)
    again = reports.kept_layout(index, vectors, 3)  # type: ignore[arg-type]
    assert np.array_equal(first[0], again[0]) and first[1] == again[1]
    with pytest.raises(AssertionError, match="laid out again"):  # other vectors: new layout
        reports.kept_layout(index, vectors[:20], 3)  # type: ignore[arg-type]
